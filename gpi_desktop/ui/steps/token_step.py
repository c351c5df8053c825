"""Step 1: the Hugging Face token, saved in the OS keyring (never anywhere else).

Every keyring call goes through `BackgroundCalls`: a locked keyring may show
an unlock prompt and block, and the window must stay responsive meanwhile.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gpi_desktop.core.hub import secrets
from gpi_desktop.ui.shared.error_words import failure_sentence
from gpi_desktop.ui.shared.tasks import BackgroundCalls

INTRO = (
    "A token lets the program download models that need permission on Hugging Face, such as "
    "Meta's Llama models (accept the licence on the model's page first). Create one at "
    f'<a href="{secrets.TOKENS_PAGE}">huggingface.co/settings/tokens</a>; "Read" access is enough. '
    "The demo model and model folders on this computer need no token."
)
NO_KEYRING = (
    "This computer has no password store (keyring) that the program can use, so a token you enter is kept "
    "only until you close the window. It is never written to a file."
)


class TokenPanel(QWidget):
    """Masked token field with Save / Remove and a one-line status of where the token comes from."""

    token_changed = Signal(object)  # TokenInfo (its repr never shows the token)

    def __init__(self, calls: BackgroundCalls, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._calls = calls
        self._info: secrets.TokenInfo | None = None

        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        intro.setOpenExternalLinks(True)

        self.field = QLineEdit()
        self.field.setEchoMode(QLineEdit.EchoMode.Password)
        self.field.setPlaceholderText("hf_… (paste your token here)")
        self.field.setToolTip("Your Hugging Face access token. It is hidden as you type and never shown again.")
        self.field.returnPressed.connect(self.save)
        self.show_button = QPushButton("Show")
        self.show_button.setCheckable(True)
        self.show_button.setToolTip("Show the characters you typed, to check them.")
        self.show_button.toggled.connect(self._toggle_echo)
        self.save_button = QPushButton("Save")
        self.save_button.setToolTip("Keep the token in this computer's password store (keyring) for the next runs.")
        self.save_button.clicked.connect(self.save)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Delete the token that this program saved. Tokens set up elsewhere stay.")
        self.remove_button.clicked.connect(self.remove)

        row = QHBoxLayout()
        row.addWidget(QLabel("Token:"))
        row.addWidget(self.field, 1)
        row.addWidget(self.show_button)
        row.addWidget(self.save_button)
        row.addWidget(self.remove_button)

        self.status_label = QLabel("Looking for a saved token…")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.keyring_note = QLabel(NO_KEYRING)
        self.keyring_note.setWordWrap(True)
        self.keyring_note.setStyleSheet("color: #8a5a00;")
        self.keyring_note.hide()
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b00020;")
        self.error_label.hide()

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addSpacing(8)
        layout.addLayout(row)
        layout.addWidget(self.status_label)
        layout.addWidget(self.keyring_note)
        layout.addWidget(self.error_label)
        layout.addStretch(1)

    # --- public --------------------------------------------------------------------------------

    @property
    def info(self) -> secrets.TokenInfo | None:
        """Where the token comes from, once known (None while the first look-up runs)."""
        return self._info

    def refresh(self) -> None:
        """Look up the token (keyring, session, HF_TOKEN, huggingface-cli login) in the background."""
        self._busy(True)
        self._calls.call(_look_up, self._on_looked_up, self._on_error)

    def save(self) -> None:
        token = self.field.text()
        if not token.strip():
            self._show_error("Paste a token into the field first.")
            return
        self._busy(True)
        self._calls.call(lambda: _save(token), self._on_saved, self._on_error)

    def remove(self) -> None:
        self._busy(True)
        self._calls.call(_remove, self._on_removed, self._on_error)

    # --- results, on the main thread ---------------------------------------------------------------

    def _on_looked_up(self, found: tuple[secrets.TokenInfo, bool]) -> None:
        info, has_keyring = found
        self.keyring_note.setVisible(not has_keyring)
        self._set_info(info)

    def _on_saved(self, found: tuple[secrets.TokenInfo, bool]) -> None:
        self.field.clear()  # the token now lives in the keyring (or the session), not in a widget
        self._on_looked_up(found)

    def _on_removed(self, found: tuple[secrets.TokenInfo, bool]) -> None:
        info, _ = found
        self._on_looked_up(found)
        if info:
            self.status_label.setText(
                self.status_label.text()
                + " (the token this program saved is removed; this one is set up outside the program)"
            )

    def _on_error(self, error: BaseException) -> None:
        self._busy(False)
        message = failure_sentence(error, "The password store could not be used")
        self._show_error(message)

    def _set_info(self, info: secrets.TokenInfo) -> None:
        self._busy(False)
        self.error_label.hide()
        self._info = info
        hint = "" if info else " You need one only for models that ask for permission, such as Llama."
        self.status_label.setText(("\u2714 " if info else "") + "Token: " + info.describe() + "." + hint)
        self.remove_button.setEnabled(info.source in ("keyring", "session"))
        self.token_changed.emit(info)

    def _show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.show()

    def _busy(self, busy: bool) -> None:
        for widget in (self.save_button, self.remove_button, self.field):
            widget.setEnabled(not busy)
        if busy:
            self.error_label.hide()

    def _toggle_echo(self, shown: bool) -> None:
        self.field.setEchoMode(QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password)
        self.show_button.setText("Hide" if shown else "Show")


# --- run on a background thread ------------------------------------------------------------------


def _look_up() -> tuple[secrets.TokenInfo, bool]:
    return secrets.find_token(), secrets.keyring_backend_available()


def _save(token: str) -> tuple[secrets.TokenInfo, bool]:
    # The window keeps the token for the session where there is no keyring (the command line refuses).
    secrets.save_token(token, allow_session_fallback=True)
    return _look_up()


def _remove() -> tuple[secrets.TokenInfo, bool]:
    secrets.clear_token()
    return _look_up()

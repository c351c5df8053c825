"""Step 6: write the export folder, then say how to load it with gpi_pack."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gpi_desktop.core.vocabulary.settings import ExportSettings
from gpi_desktop.ui.shared.formatting import linkify
from gpi_desktop.ui.steps.export_flow import exported_files_text

NOT_READY = "Run the prompts first (step 5); the export becomes available when every prompt is done."


class ExportPage(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.intro_label = QLabel()
        self.intro_label.setWordWrap(True)
        self.export_button = QPushButton("Choose a folder and export\u2026")
        self.export_button.setToolTip("Pick an empty folder (or make a new one); the files are written there.")
        self.export_button.setEnabled(False)
        self.state_label = QLabel(NOT_READY)
        self.state_label.setWordWrap(True)
        self.state_label.setTextFormat(Qt.TextFormat.RichText)
        self.state_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress_bar = QProgressBar()
        self.progress_bar.hide()

        self.code_label = QLabel("Load the export in Python with gpi_pack:")
        self.code = QPlainTextEdit()
        self.code.setReadOnly(True)
        self.code.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.code.setFixedHeight(self.code.fontMetrics().lineSpacing() * 4 + 16)
        self.code.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.copy_button = QPushButton("Copy the code")
        self.copy_button.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.code.toPlainText()))
        self.open_button = QPushButton("Open the folder")
        code_buttons = QHBoxLayout()
        code_buttons.addWidget(self.copy_button)
        code_buttons.addWidget(self.open_button)
        code_buttons.addStretch(1)
        self._done_widgets = (self.code_label, self.code, self.copy_button, self.open_button)
        for widget in self._done_widgets:
            widget.hide()

        self.inspect_button = QPushButton("Inspect an export folder\u2026")
        self.inspect_button.setToolTip(
            "Say what an export (this one or any other) was made with: model, revision, "
            "template, its date, settings and inputs; and check that none of its files "
            "changed since it was written."
        )
        self.inspect_label = QLabel()
        self.inspect_label.setWordWrap(True)
        self.inspect_text = QPlainTextEdit()
        self.inspect_text.setReadOnly(True)
        self.inspect_text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.inspect_text.setMinimumHeight(self.inspect_text.fontMetrics().lineSpacing() * 10)
        self.inspect_text.hide()

        row = QHBoxLayout()
        row.addWidget(self.export_button)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro_label)
        layout.addSpacing(8)
        layout.addLayout(row)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.state_label)
        layout.addSpacing(8)
        layout.addWidget(self.code_label)
        layout.addWidget(self.code)
        layout.addLayout(code_buttons)
        layout.addSpacing(8)
        inspect_row = QHBoxLayout()
        inspect_row.addWidget(self.inspect_button)
        inspect_row.addWidget(self.inspect_label, 1)
        layout.addLayout(inspect_row)
        layout.addWidget(self.inspect_text, 1)
        layout.addStretch(1)
        self.set_export_settings(ExportSettings())

    def set_export_settings(self, export: ExportSettings) -> None:
        self.intro_label.setText(
            "The export folder holds: "
            + exported_files_text(export)
            + " It can be handed to gpi_pack or to a colleague as it is."
        )

    def set_ready(self, ready: bool, rows: int = 0, made_with: str = "") -> None:
        """`made_with`: the run's model, prompts and settings (HTML lines), shown so that they can be checked."""
        self.export_button.setEnabled(ready)
        self.state_label.setStyleSheet("")
        if ready:
            self.state_label.setText(
                f"{rows:,} texts and vectors are ready to export. They were made with:<br>" + made_with
            )
        else:
            self.state_label.setText(NOT_READY)
        if not ready:
            for widget in self._done_widgets:
                widget.hide()

    def set_stale(self, text: str) -> None:
        """The finished results belong to other inputs (`text`, HTML, says which): refuse to export them."""
        self.set_ready(False)
        self.state_label.setText(text)
        self.state_label.setStyleSheet("color: #8a5a00;")

    def set_exporting(self, exporting: bool) -> None:
        self.export_button.setEnabled(not exporting)
        self.progress_bar.setVisible(exporting)
        if exporting:
            self.progress_bar.setRange(0, 0)
            self.state_label.setStyleSheet("")
            self.state_label.setText("Writing the files\u2026")

    def show_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)

    def show_done(self, message: str, snippet: str) -> None:
        self.state_label.setStyleSheet("")
        self.state_label.setText(html.escape(message, quote=False))
        self.code.setPlainText(snippet)
        for widget in self._done_widgets:
            widget.show()

    def show_error(self, message: str) -> None:
        self.state_label.setText(linkify(message))
        self.state_label.setStyleSheet("color: #b00020;")

    def set_inspecting(self, folder: str) -> None:
        self.inspect_button.setEnabled(False)
        self.inspect_label.setStyleSheet("")
        self.inspect_label.setText(f"Reading '{folder}' and checking its files\u2026")

    def show_inspection(self, lines: list[str], ok: bool) -> None:
        """The plain-words report of core.output.provenance; a failed checksum is said in the error colour."""
        self.inspect_button.setEnabled(True)
        self.inspect_label.setText(
            "Every file matches its checksum." if ok else "Some files do not match their checksums (see the last line)."
        )
        self.inspect_label.setStyleSheet("" if ok else "color: #b00020;")
        self.inspect_text.setPlainText("\n".join(lines))
        self.inspect_text.show()

    def show_inspection_error(self, message: str) -> None:
        self.inspect_button.setEnabled(True)
        self.inspect_text.hide()
        self.inspect_label.setText(message)
        self.inspect_label.setStyleSheet("color: #b00020;")

"""Step 2: which model, and what the run will use (GPU or CPU, the model's hidden width)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gpi_desktop.core.vocabulary.errors import GpiError
from gpi_desktop.core.vocabulary.formatting import human_bytes
from gpi_desktop.core.vocabulary.settings import DEFAULT_MODEL
from gpi_desktop.ui.shared.error_words import failure_sentence
from gpi_desktop.ui.shared.formatting import linkify
from gpi_desktop.ui.shared.resources import demo_model_path, is_demo_model
from gpi_desktop.ui.shared.tasks import BackgroundCalls
from gpi_desktop.ui.state.window_state import MemoryInputs

if TYPE_CHECKING:
    from gpi_desktop.core.model.memory import FitVerdict
    from gpi_desktop.core.model.models import TargetInfo

INTRO = (
    "Type the name of a model on Hugging Face (for example <b>meta-llama/Llama-3.1-8B-Instruct</b>, the model "
    "gpi_pack uses) or choose a folder on this computer that holds a downloaded model. "
    "A hub model is downloaded once, when you start the first run."
)
DEMO_NOTE = (
    "This is the small demo model that comes with the program. Its weights are random, so the texts it writes "
    "are gibberish. Use it to try the whole flow quickly; use a real model for research."
)
log = logging.getLogger(__name__)

MODEL_TIP = (
    "A Hugging Face model id (owner/name) or a folder that holds config.json and the weight files. "
    f"Default: {DEFAULT_MODEL}, as in gpi_pack."
)


@dataclass(frozen=True)
class TargetCheck:
    """What the run will use (`core.model.models.TargetInfo`) and whether it fits (`core.model.memory.FitVerdict` or None)."""

    target: TargetInfo
    verdict: FitVerdict | None


def check_target(model: str, inputs: MemoryInputs, token: str | None) -> TargetCheck:
    """Runs on a background thread: reads the config (and weight sizes), never the weights."""
    from gpi_desktop.core.model.memory import check_fit
    from gpi_desktop.core.model.models import describe_target

    target = describe_target(model, inputs.device, token)
    verdict = None
    if target.hidden_size:  # the config was readable; otherwise target.warning already says why
        try:
            _estimate, verdict = check_fit(
                model,
                dtype=inputs.dtype,
                device=inputs.device,
                quantization=inputs.quantization,
                batch_size=inputs.batch_size,
                max_new_tokens=inputs.max_new_tokens,
                token=token,
            )
        except GpiError as error:
            log.info("memory estimate unavailable: %s", error)
        except Exception:
            log.exception("memory estimate failed")
    return TargetCheck(target, verdict)


CACHE_TIP = (
    "Models that this program, transformers or 'hf download' have already downloaded into the Hugging Face "
    "cache on this computer, with the disk space each takes. Click one to use it: it loads from this computer, "
    "without downloading it again."
)
CACHE_ROWS = 5  # the list stays compact; more models scroll
CACHE_MIN_ROWS = 2  # one row alone looks like a text field, not a list to pick from


@dataclass(frozen=True)
class CacheListing:
    """What the Hugging Face cache holds (`core.hub.cache.CachedModel`s) and where it is."""

    models: tuple
    folder: str
    offline: bool  # HF_HUB_OFFLINE is on: only these models can be used
    incomplete: frozenset  # model ids whose weights are not all there (a download that stopped)


def list_cache() -> CacheListing:
    """Runs on a background thread: scans the cache folder (it may be large, or on a slow disk)."""
    from huggingface_hub import constants

    from gpi_desktop.core.hub.cache import cached_models, cached_snapshot, hub_cache_dir

    models = tuple(cached_models())
    incomplete = frozenset(m.model_id for m in models if cached_snapshot(m.model_id, m.path.name) is None)
    return CacheListing(models, str(hub_cache_dir()), bool(constants.HF_HUB_OFFLINE), incomplete)


VECTOR_LENGTH_TIP = (
    "Vector length: the model's hidden size (hidden width, hidden_size in its config.json), the "
    "number of values in the last layer's state that each text's vector keeps."
)


def target_lines(check: TargetCheck) -> tuple[str, bool]:
    """Plain lines for a target check, and whether they carry a warning."""
    info = check.target
    if info.on_cpu:
        where = "Will run on: the CPU."
    else:
        # The Apple GPU's figure is its share of the Mac's memory, not memory of its own.
        usable = "of it for the GPU" if info.kind == "mps" else "of memory free"
        free = f", {human_bytes(info.free_bytes)} {usable}" if info.free_bytes is not None else ""
        where = f"Will run on: {info.where}{free}."
    width = (
        f"Vector length: {info.hidden_size:,} numbers per text (what each text's exported vector holds)."
        if info.hidden_size
        else "Vector length: not known yet."
    )
    lines = [where, width]
    warn = bool(info.warning)
    if info.warning:
        lines.append(info.warning)
    verdict = check.verdict
    if verdict is not None:
        lines.append("Memory: " + verdict.sentence)
        lines.extend("\u2022 " + tip for tip in verdict.suggestions)
        warn = warn or not verdict.fits
    return "\n".join(lines), warn


class ModelPanel(QWidget):
    """The model field, shortcuts to a folder or the demo model, and the target preview."""

    model_changed = Signal(str)
    target_checked = Signal(object)  # TargetCheck, or the exception

    def __init__(self, calls: BackgroundCalls, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._calls = calls
        self._check_seq = 0
        self._cache_seq = 0
        self._checking = False
        self._stopped = False
        self._inputs = MemoryInputs()
        self._token_source = lambda: None  # set by the window: returns the token to read the config with
        self._start_folder = ""
        self.last_target = None
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        model_row = self._model_row()
        check_row = self._check_row()
        cache_heading = self._cache_part()
        self._lay_out(intro, model_row, check_row, cache_heading)
        # A burst of edits (typing a path) makes one check, not one per keystroke.
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(400)
        self._debounce.timeout.connect(self.check)
        self._update_notes()

    def _model_row(self) -> QHBoxLayout:
        """The model field and the three ways to fill it."""
        self.field = QLineEdit(DEFAULT_MODEL)
        self.field.setToolTip(MODEL_TIP)
        self.field.setPlaceholderText("owner/model-name, or a folder")
        self.field.editingFinished.connect(self._edited)
        folder_button = QPushButton("Choose folder…")
        folder_button.setToolTip("Use a model that is already on this computer (the folder with config.json).")
        folder_button.clicked.connect(self._choose_folder)
        self.demo_button = QPushButton("Use the demo model")
        self.demo_button.setToolTip(
            "A tiny model with random weights that comes with the program: no token, "
            "no GPU and no download needed. Its texts are gibberish."
        )
        self.demo_button.clicked.connect(self.use_demo_model)
        default_button = QPushButton("Default")
        default_button.setToolTip(f"Go back to {DEFAULT_MODEL}, the model gpi_pack uses.")
        default_button.clicked.connect(lambda: self.set_model(DEFAULT_MODEL))

        row = QHBoxLayout()
        row.addWidget(QLabel("Model:"))
        row.addWidget(self.field, 1)
        row.addWidget(folder_button)
        row.addWidget(self.demo_button)
        row.addWidget(default_button)
        return row

    def _check_row(self) -> QHBoxLayout:
        """What the model and this computer give (vector length, memory verdict), and Check again."""
        self.demo_note = QLabel(DEMO_NOTE)
        self.demo_note.setWordWrap(True)
        self.demo_note.setStyleSheet("background: #fff4d6; padding: 6px; border-radius: 4px;")
        self.page_link = QLabel()
        self.page_link.setOpenExternalLinks(True)

        self.target_label = QLabel()
        self.target_label.setWordWrap(True)
        self.target_label.setTextFormat(Qt.TextFormat.RichText)
        self.target_label.setOpenExternalLinks(True)
        self.target_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.target_label.setToolTip(VECTOR_LENGTH_TIP)
        self.check_button = QPushButton("Check again")
        self.check_button.setToolTip(
            "Look again at the GPU and the model's settings (reads only the model's "
            "small config.json, not the weights)."
        )
        self.check_button.clicked.connect(self.check)
        check_row = QHBoxLayout()
        check_row.addWidget(self.target_label, 1)
        check_row.addWidget(self.check_button, 0, Qt.AlignmentFlag.AlignTop)
        return check_row

    def _cache_part(self) -> QLabel:
        """The list of models already in the Hugging Face cache (filled later, off the GUI thread); its heading."""
        cache_heading = QLabel("<b>Models already on this computer</b>")
        cache_heading.setToolTip(CACHE_TIP)
        self.cache_list = QListWidget()
        self.cache_list.setToolTip(CACHE_TIP)
        self.cache_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.cache_list.setAlternatingRowColors(True)
        self.cache_list.setMaximumWidth(720)
        self.cache_list.setStyleSheet("QListWidget::item { padding: 3px 4px; }")
        self.cache_list.itemClicked.connect(self._use_cached)
        self.cache_list.hide()
        self.cache_note = QLabel("Looking in the Hugging Face cache\u2026")
        self.cache_note.setWordWrap(True)
        self.cache_note.setToolTip(CACHE_TIP)
        self.cache_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        return cache_heading

    def _lay_out(self, intro: QLabel, row: QHBoxLayout, check_row: QHBoxLayout, cache_heading: QLabel) -> None:
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addSpacing(8)
        layout.addLayout(row)
        layout.addWidget(self.demo_note)
        layout.addWidget(self.page_link)
        layout.addSpacing(8)
        layout.addLayout(check_row)
        layout.addSpacing(12)
        layout.addWidget(cache_heading)
        layout.addWidget(self.cache_list)
        layout.addWidget(self.cache_note)
        layout.addStretch(1)

    # --- public --------------------------------------------------------------------------------

    def model(self) -> str:
        return self.field.text().strip()

    def set_model(self, model: str) -> None:
        if model != self.field.text():
            self.field.setText(model)
        self._edited()

    def use_demo_model(self) -> None:
        self.set_model(str(demo_model_path()))

    def set_memory_inputs(self, inputs: MemoryInputs) -> None:
        """Check again (after a pause) when the device, precision, batch or token limit change."""
        if inputs != self._inputs:
            self._inputs = inputs
            self._debounce.start()

    def set_token_source(self, source) -> None:
        self._token_source = source

    def set_start_folder(self, folder: str) -> None:
        self._start_folder = folder

    def stop(self) -> None:
        """No more checks (the window is closing)."""
        self._stopped = True
        self._debounce.stop()

    def refresh_cached(self) -> None:
        """Look again at the models in the Hugging Face cache (after a download, or when the step is shown)."""
        if self._stopped:
            return
        self._cache_seq += 1
        seq = self._cache_seq
        self._calls.call(list_cache, lambda listing: self._on_cache(seq, listing), lambda exc: self._on_cache(seq, exc))

    def is_checking(self) -> bool:
        """True while a check runs or is about to (the debounce after an edit)."""
        return self._checking or self._debounce.isActive()

    def check(self) -> None:
        """Describe the target in the background (imports torch there, never here)."""
        model, inputs, token_source = self.model(), self._inputs, self._token_source
        if self._stopped:
            return
        if not model:
            self.target_label.setText("Enter a model first.")
            return
        self._check_seq += 1
        seq = self._check_seq
        self._checking = True
        self.check_button.setEnabled(False)
        self.check_button.setText("Checking…")
        self.target_label.setStyleSheet("")
        self.target_label.setText("Looking at the GPU and the model…")

        self._calls.call(
            lambda: check_target(model, inputs, token_source()),
            lambda info: self._on_target(seq, info),
            lambda exc: self._on_target(seq, exc),
        )

    # --- internals ---------------------------------------------------------------------------------

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not event.spontaneous():  # the step was opened, not the window restored from the task bar
            self.refresh_cached()

    def _on_cache(self, seq: int, listing) -> None:
        if seq != self._cache_seq:
            return  # a newer look is on its way
        self.cache_list.clear()
        if isinstance(listing, BaseException):
            self.cache_list.hide()
            self.cache_note.setText(failure_sentence(listing, "The Hugging Face cache could not be read"))
            return
        for cached in listing.models:
            text = cached.describe()
            if cached.model_id in listing.incomplete:
                text += " \u2013 download not finished"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, cached.model_id)
            item.setToolTip(f"Click to use {cached.model_id}. It is in {cached.path}")
            self.cache_list.addItem(item)
        self.cache_list.setVisible(bool(listing.models))
        rows = max(CACHE_MIN_ROWS, min(len(listing.models), CACHE_ROWS))
        row_height = self.cache_list.sizeHintForRow(0) if listing.models else 0
        self.cache_list.setFixedHeight(rows * row_height + 2 * self.cache_list.frameWidth() + 2)
        self._select_cached()
        if listing.models:
            first = "Click one to use it: it loads from this computer without downloading."
        else:
            first = (
                "None yet. A hub model appears here once it has been downloaded (by this program, by "
                "transformers or by 'hf download')."
            )
        offline = (
            "Offline mode is on (HF_HUB_OFFLINE=1): only these models can be used."
            if listing.offline
            else "Offline mode (HF_HUB_OFFLINE=1) uses only these."
        )
        self.cache_note.setText(f"{first}\n{offline}\nCache folder: {listing.folder}")

    def _use_cached(self, item: QListWidgetItem) -> None:
        self.set_model(item.data(Qt.ItemDataRole.UserRole))

    def _select_cached(self) -> None:
        """Mark the cached model that the field names, so the list shows which one is in use."""
        model = self.model()
        self.cache_list.clearSelection()
        for i in range(self.cache_list.count()):
            item = self.cache_list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == model:
                item.setSelected(True)
                self.cache_list.scrollToItem(item)

    def _edited(self) -> None:
        # What was found out was about the model before the edit: never show it as this one's.
        self.last_target = None
        self._select_cached()
        self._update_notes()
        self.model_changed.emit(self.model())
        self._debounce.start()

    def _update_notes(self) -> None:
        model = self.model()
        self.demo_note.setVisible(is_demo_model(model))
        looks_like_hub_id = (
            "/" in model
            and not model.startswith((".", "/", "~"))
            and model.count("/") == 1
            and ":" not in model
            and "\\" not in model
        )
        if looks_like_hub_id:
            url = f"https://huggingface.co/{model}"
            self.page_link.setText(f'Model page: <a href="{url}">{url}</a>')
        self.page_link.setVisible(looks_like_hub_id)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the model folder", self._start_folder)
        if folder:
            self.set_model(folder)

    def _on_target(self, seq: int, info) -> None:
        if seq != self._check_seq:
            return  # the model or device changed while this check ran; a newer one is on its way
        self._checking = False
        self.check_button.setEnabled(True)
        self.check_button.setText("Check again")
        if isinstance(info, BaseException) or info.target.problem:
            # An error, as any other that stops a run: not a warning beside a device that would never run it.
            self.last_target = None if isinstance(info, BaseException) else info.target
            message = (
                failure_sentence(info, "The model could not be checked")
                if isinstance(info, BaseException)
                else info.target.problem
            )
            self.target_label.setText(linkify(message))
            self.target_label.setStyleSheet("color: #b00020;")
        else:
            self.last_target = info.target
            text, warn = target_lines(info)
            self.target_label.setText(linkify(text))
            self.target_label.setStyleSheet("color: #8a5a00;" if warn else "")
        self.target_checked.emit(info)

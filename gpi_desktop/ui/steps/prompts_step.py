"""Step 3: the prompts file (CSV, TSV or XLSX), a workbook's sheet, its text column, and what is in it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gpi_desktop.core.files import prompts as core_prompts
from gpi_desktop.core.model.context import describe_too_long, prompt_room
from gpi_desktop.ui.shared.error_words import failure_sentence
from gpi_desktop.ui.shared.resources import sample_prompts_path
from gpi_desktop.ui.shared.table_models import DataFrameModel, read_only_table
from gpi_desktop.ui.shared.tasks import BackgroundCalls
from gpi_desktop.ui.steps.context_meter import ContextMeter, Measured, lengths_key

if TYPE_CHECKING:
    import pandas as pd

INTRO = (
    "One prompt (or one existing text) per row, under a header row, in a CSV, TSV or Excel (.xlsx) file. "
    "Open the file or drag it onto this window. Each row gives one generated text and one vector, "
    "in the same order; the row numbers at the left start at 0, as the exported files do (hidden_0.pt is the first row)."
)
FILE_FILTER = "Tables (*.csv *.tsv *.tab *.txt *.xlsx *.xlsm);;All files (*)"
CHOOSE_COLUMN = "\u2014 choose the column with the texts \u2014"
DROP_SUFFIXES = {".csv", ".tsv", ".tab", ".txt", ".xlsx", ".xlsm"}
ENCODING_WORDS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8",
    "utf-16": "UTF-16",
    "cp1252": "Windows-1252",
    "latin-1": "Latin-1",
    "xlsx": "Excel workbook",
}


# The line above the table names this many of the rows too long; the table marks every one, with its length.
LISTED_TOO_LONG = 5
MEASURING = "Measuring the prompts against the model's context\u2026"
ERROR_STYLE = "color: #b00020;"
NOTE_STYLE = "color: #8a5a00;"


class PromptsPanel(QWidget):
    """Open a file, pick the text column, see rows, empty cells and prompts too long for the model before the run."""

    table_changed = Signal(object)  # core.files.prompts.PromptTable with a chosen column, or None
    load_failed = Signal(str)
    lengths_changed = Signal()  # which rows are too long for the model is known now, or no longer

    def __init__(self, calls: BackgroundCalls, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._calls = calls
        self._frame: pd.DataFrame | None = None  # the file's cells, once read
        self._meta: core_prompts.TableMeta | None = None
        self._path: Path | None = None
        self._table: core_prompts.PromptTable | None = None
        self._empty: list[int] = []
        self._loading = False
        self._start_folder = ""
        self._settings = None  # core.settings.RunSettings of the run the prompts are measured for, or None
        self._measured: Measured | None = None
        self.meter = ContextMeter(calls, self)
        self.meter.measured.connect(self._on_measured)
        self.meter.progress.connect(self._on_measure_progress)

        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        self.open_button = QPushButton("Open file…")
        self.open_button.setToolTip("Choose a CSV, TSV or Excel (.xlsx) file with one prompt per row.")
        self.open_button.clicked.connect(self._choose_file)
        self.sample_button = QPushButton("Use the sample prompts")
        self.sample_button.setToolTip("Ten short prompts about political speeches that come with the program.")
        self.sample_button.clicked.connect(lambda: self.load_file(sample_prompts_path()))
        self.file_label = QLabel("No file opened yet.")
        self.file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # Shown for a workbook of several sheets only: which one holds the prompts is the user's to say.
        self.sheet_label = QLabel("Sheet:")
        self.sheet_box = QComboBox()
        self.sheet_box.setMinimumContentsLength(12)
        self.sheet_box.setToolTip(
            "The workbook's sheet that holds the prompts; the first is read unless you choose another."
        )
        self.sheet_box.activated.connect(self._sheet_chosen)
        self._show_sheets(())
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.sample_button)
        buttons.addWidget(self.file_label)
        buttons.addSpacing(12)
        buttons.addWidget(self.sheet_label)
        buttons.addWidget(self.sheet_box)
        buttons.addStretch(1)

        self.column_box = QComboBox()
        self.column_box.setMinimumContentsLength(24)
        self.column_box.setToolTip(
            "The column whose cells are sent to the model, one per row. "
            "It is chosen for you when one column is clearly the text."
        )
        self.column_box.setEnabled(False)
        self.column_box.currentIndexChanged.connect(self._column_chosen)
        self.summary_label = QLabel()
        column_row = QHBoxLayout()
        column_row.addWidget(QLabel("Text column:"))
        column_row.addWidget(self.column_box)
        column_row.addSpacing(12)
        column_row.addWidget(self.summary_label, 1)

        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.hide()
        self.context_label = QLabel()  # the prompts against the model's context: measuring, all fit, or too long
        self.context_label.setWordWrap(True)
        self.context_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.context_label.hide()

        self.model = DataFrameModel(self)
        self.view = read_only_table(self.model)
        self.view.setAlternatingRowColors(True)
        self.view.horizontalHeader().setDefaultSectionSize(160)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(buttons)
        layout.addLayout(column_row)
        layout.addWidget(self.message_label)
        layout.addWidget(self.context_label)
        layout.addWidget(self.view, 1)

    # --- public --------------------------------------------------------------------------------

    @property
    def table(self) -> core_prompts.PromptTable | None:
        """The loaded file with its text column chosen, or None."""
        return self._table

    @property
    def empty(self) -> list[int]:
        """Zero-based rows whose text cell is empty."""
        return list(self._empty)

    def is_loading(self) -> bool:
        return self._loading

    def set_token_source(self, source) -> None:
        self.meter.set_token_source(source)

    def set_run_settings(self, settings) -> None:
        """The run the prompts are for (a RunSettings, None while there is no model or a setting is half-typed).

        The prompts are measured again (off the GUI thread) when what their lengths depend on changes; a new token
        limit only moves the line they must stay under.
        """
        self._settings = settings
        if settings is None or self._table is None:
            self.meter.forget()
        else:
            self.meter.measure(settings, self._table)
        self._show_lengths()

    def measure_again(self) -> None:
        """Measure once more where the last measure failed (a token was added, the model checked again)."""
        measured = self._current_measure()
        if measured is not None and measured.error:
            self.meter.measure_again()
            self.set_run_settings(self._settings)

    def too_long_message(self) -> str | None:
        """The plain sentence naming the prompts too long for the model's context now, or None (all fit, or not known)."""
        measured = self._current_measure()
        if measured is None or measured.lengths is None or measured.lengths.context is None or self._settings is None:
            return None
        limit = self._settings.max_new_tokens
        too_long = measured.lengths.too_long(limit)
        return describe_too_long(too_long, measured.lengths.context, limit, LISTED_TOO_LONG) if too_long else None

    def stop(self) -> None:
        """No more measures (the window is closing)."""
        self.meter.stop()

    def set_start_folder(self, folder: str) -> None:
        self._start_folder = folder

    def load_file(self, path: str | Path, column: str | None = None, *, sheet: str | None = None) -> None:
        """Read the file (a workbook's `sheet`, by default its first) in the background; the table appears when read."""
        path = Path(path)
        self._loading = True
        self._set_buttons(False)
        self.file_label.setText(f"Reading {path.name}…")
        self._show_message("", error=False)

        def read():
            frame, meta = core_prompts.read_table(path, sheet)
            guess = column if column is not None else core_prompts.guess_text_column(frame)
            if column is None and core_prompts.duplicate_of(guess, meta.duplicates) is not None:
                guess = None  # which copy holds the prompts is the user's to say
            return frame, meta, guess

        self._calls.call(read, lambda got: self._on_read(path, got), lambda exc: self._on_failed(path, exc))

    def select_sheet(self, name: str) -> None:
        """Read the prompts from another sheet of the open workbook (as choosing it in the list does)."""
        index = self.sheet_box.findText(name)
        if index >= 0:
            self.sheet_box.setCurrentIndex(index)
            self._sheet_chosen()

    def select_column(self, name: str) -> None:
        index = self.column_box.findText(name)
        if index >= 0:
            self.column_box.setCurrentIndex(index)

    # --- internals ---------------------------------------------------------------------------------

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open the prompts file", self._start_folder, FILE_FILTER)
        if path:
            self.load_file(path)

    def _on_read(self, path: Path, got) -> None:
        frame, meta, guess = got
        self._loading = False
        self._set_buttons(True)
        self._frame, self._meta, self._path = frame, meta, path
        encoding = ENCODING_WORDS.get(meta.encoding, meta.encoding)
        self.file_label.setText(f"{path.name}  ({encoding})")
        self.file_label.setToolTip(str(path))
        self._show_sheets(meta.sheets, meta.sheet)
        self.model.set_frame(frame)
        self.column_box.blockSignals(True)
        self.column_box.clear()
        columns = [str(c) for c in frame.columns]
        if guess not in columns:
            self.column_box.addItem(CHOOSE_COLUMN)
        self.column_box.addItems(columns)
        self.column_box.setCurrentIndex(self.column_box.findText(guess) if guess in columns else 0)
        self.column_box.setEnabled(True)
        self.column_box.blockSignals(False)
        self._column_chosen()

    def _on_failed(self, path: Path, exc: BaseException) -> None:
        self._loading = False
        self._set_buttons(True)
        message = failure_sentence(exc, f"{path.name} could not be read")
        if self._table is None:
            self.file_label.setText("No file opened yet.")
        else:
            self.file_label.setText(f"{self._table.path.name} (still in use; the new file was not opened)")
        self._show_message(message, error=True)
        self.load_failed.emit(message)

    def _widen_text_column(self, name: str) -> None:
        """The prompts' column gets the room the other columns leave, at least twice theirs: the last column
        took it all before, so prompts read "Create a biography of …" in the narrowest column of the table."""
        if self._frame is None:  # pragma: no cover - only called with a file read
            return
        header = self.view.horizontalHeader()
        columns = [str(c) for c in self._frame.columns]
        text = columns.index(name)
        header.setStretchLastSection(False)
        for i in range(len(columns)):
            if i != text:
                header.resizeSection(i, header.defaultSectionSize())
        room = self.view.viewport().width() - header.defaultSectionSize() * (len(columns) - 1)
        header.resizeSection(text, max(2 * header.defaultSectionSize(), room))

    def _column_chosen(self) -> None:
        frame, meta, path = self._frame, self._meta, self._path  # set together when a file is read
        if frame is None or meta is None or path is None:
            return
        name = self.column_box.currentText()
        rows = len(frame)
        if name not in [str(c) for c in frame.columns]:
            self._table, self._empty = None, []
            self.model.set_text_column(None)
            self.summary_label.setText(f"{rows:,} rows")
            shared = meta.duplicates[0] if meta.duplicates else None
            self._show_message(
                f"{shared.describe(path.name)}: choose the one that holds the prompts above."
                if shared is not None
                else "Several columns could hold the texts: choose the text column above.",
                error=False,
            )
            self.set_run_settings(self._settings)
            self.table_changed.emit(None)
            return
        self._table = core_prompts.PromptTable.from_read(path, frame, name, meta)
        self._empty = core_prompts.empty_rows(self._table)
        formulas = core_prompts.uncalculated_formula_rows(self._table)
        shared = core_prompts.duplicate_of(name, meta.duplicates)
        self.model.set_text_column(name, self._empty)
        self._widen_text_column(name)
        self.summary_label.setText(f"{rows:,} rows \u00b7 {len(self._empty):,} empty text cells")
        if formulas:
            self._show_message(
                f"{len(formulas):,} rows of '{name}' are formulas that Excel has not calculated (rows "
                f"{core_prompts.format_rows(formulas)}, counting from 0; shown in red), so they have no text: open "
                "the file in Excel and save it, then open it again.",
                error=True,
            )
        elif self._empty:
            self._show_message(
                f"{len(self._empty):,} rows have no text in '{name}' (rows {core_prompts.format_rows(self._empty)}, "
                "counting from 0; shown in red): write a prompt there or delete those rows, then open the file again.",
                error=True,
            )
        elif shared is not None:
            self._show_message(
                f"{shared.describe(path.name)}: check that '{name}' is the one that holds the prompts.", error=False
            )
        elif self._table.other_sheets:
            self._show_message(
                f"{self._table.describe_sheets()}: choose another sheet above if the prompts are there.", error=False
            )
        else:
            self._show_message("", error=False)
        self.set_run_settings(self._settings)
        self.table_changed.emit(self._table)

    def _show_sheets(self, sheets: tuple[str, ...], current: str | None = None) -> None:
        self.sheet_box.clear()
        self.sheet_box.addItems(list(sheets))
        if current is not None:
            self.sheet_box.setCurrentIndex(self.sheet_box.findText(current))
        for widget in (self.sheet_label, self.sheet_box):
            widget.setVisible(len(sheets) > 1)

    def _sheet_chosen(self) -> None:
        name = self.sheet_box.currentText()
        if self._path is not None and self._meta is not None and name and name != self._meta.sheet:
            self.load_file(self._path, sheet=name)

    def _show_message(self, text: str, *, error: bool) -> None:
        self.message_label.setText(text)
        self.message_label.setStyleSheet(ERROR_STYLE if error else NOTE_STYLE)
        self.message_label.setVisible(bool(text))

    # --- the prompts against the model's context ---------------------------------------------------------

    def _current_measure(self) -> Measured | None:
        """The last measure, when it was made for the inputs now (never one of other inputs)."""
        if self._measured is None or self._settings is None or self._table is None:
            return None
        return self._measured if self._measured.key == lengths_key(self._settings, self._table) else None

    def _on_measured(self, measured: Measured) -> None:
        self._measured = measured
        self._show_lengths()
        self.lengths_changed.emit()

    def _on_measure_progress(self, progress) -> None:
        if self._current_measure() is None and progress.total:
            self.context_label.setText(f"{MEASURING} ({progress.done:,} of {progress.total:,} rows)")

    def _show_lengths(self) -> None:
        measured = self._current_measure()
        lengths = measured.lengths if measured is not None else None
        if lengths is None or lengths.context is None:
            self.model.set_too_long({}, 0)
        if self._settings is None or self._table is None:
            self.context_label.hide()
            return
        limit = self._settings.max_new_tokens
        if measured is None:
            self._show_context(MEASURING, NOTE_STYLE)
        elif measured.error:
            self._show_context(
                f"The prompts are not measured against the model's context yet: "
                f"{measured.error.rstrip('.')}. Run measures them before it loads the model.",
                NOTE_STYLE,
            )
        elif lengths.context is None:
            self._show_context(
                "The model's config does not say how many tokens it reads, so the prompts' lengths cannot be checked.",
                NOTE_STYLE,
            )
        else:
            room = prompt_room(lengths.context, limit)
            too_long = lengths.too_long(limit)
            self.model.set_too_long({p.row: p.tokens for p in too_long}, room)
            if too_long:
                self._show_context(self.too_long_message() + " They are marked below.", ERROR_STYLE)
            else:
                longest = max(lengths.tokens, default=0)
                self._show_context(
                    f"All {len(lengths.tokens):,} prompts fit the model's context: the longest has "
                    f"{longest:,} tokens (chat template included), and with up to {limit:,} new "
                    f"tokens a prompt may have {room:,}.",
                    "",
                )

    def _show_context(self, text: str, style: str) -> None:
        self.context_label.setText(text)
        self.context_label.setStyleSheet(style)
        self.context_label.show()

    def _set_buttons(self, enabled: bool) -> None:
        self.open_button.setEnabled(enabled)
        self.sample_button.setEnabled(enabled)


def dropped_table(mime: QMimeData) -> Path | None:
    """The first prompts file (by its suffix) among the local files dropped on the window, or None."""
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.suffix.lower() in DROP_SUFFIXES:
                return path
    return None

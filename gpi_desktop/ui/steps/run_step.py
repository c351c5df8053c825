"""Step 5: run, with progress, and the preview that fills in as texts finish.

The page only shows; the main window starts and stops the run.
"""

from __future__ import annotations

from PySide6.QtCore import QItemSelection, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from gpi_desktop.core.vocabulary.progress import Progress, ProgressKind
from gpi_desktop.ui.shared.formatting import linkify, progress_line
from gpi_desktop.ui.shared.table_models import (
    COL_MATCH,
    COL_PROMPT,
    COL_ROW,
    COL_STOP,
    COL_TEXT,
    COL_TOKENS,
    PREVIEW_HEADERS,
    ResultsModel,
    read_only_table,
)

PROMPTS_FORMAT = "%v of %m prompts"
NO_PROMPTS = "No prompts yet"
TEMPLATE_NOTES = {
    "gpi_pack": (
        "<b>Texts start with \u201cassistant\u201d?</b> That is gpi_pack's chat formatting: the prompt ends "
        "without the assistant's header, so most chat models write their role name first, and it goes into "
        "the texts, as with gpi_pack (keep it to match gpi_pack's vectors). "
        '<a href="model-card">Use the model-card style</a> for clean texts: the prompt ends with the '
        "header the model's page recommends, and the texts and the vectors then differ from gpi_pack's."
    ),
    "model-card": (
        "<b>Model-card chat formatting</b>: the prompt ends with the assistant's header, so texts start "
        "with the answer; the texts and the vectors differ from gpi_pack's. "
        '<a href="gpi_pack">Use gpi_pack\'s formatting</a> to match gpi_pack (most models then write '
        "\u201cassistant\u201d at the start of each text)."
    ),
}
IDLE_HINT = "Press Run to start. You can stop at any time: finished texts are kept, and the run can continue later."


def share_columns(header: QHeaderView) -> None:
    """The short columns as wide as their headers; the prompt and the generated text share the rest.

    Widths come from the header's words, not from the cells: measuring cells would read every row.
    """
    header.setStretchLastSection(False)
    metrics = header.fontMetrics()
    for col in (COL_ROW, COL_TOKENS, COL_STOP, COL_MATCH):
        header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(col, metrics.horizontalAdvance(PREVIEW_HEADERS[col]) + 3 * metrics.averageCharWidth())
    for col in (COL_PROMPT, COL_TEXT):
        header.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)


class RunPage(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        buttons = self._controls()
        self._make_labels()
        splitter = self._results_part()
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary_label)
        layout.addLayout(buttons)
        layout.addWidget(self.blocker_label)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.status_label)
        layout.addWidget(self.stale_label)
        layout.addWidget(self.template_note)
        layout.addWidget(splitter, 1)

    def _controls(self) -> QHBoxLayout:
        """Run, Stop, the progress bar and Export, in one row."""
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextFormat(Qt.TextFormat.RichText)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Generate a text and a vector for every prompt with the chosen model and settings.")
        self.run_button.setMinimumWidth(110)
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Stop")
        self.cancel_button.setToolTip(
            "Stop after the current step. Finished texts are kept; press Run again to continue where it stopped."
        )
        self.cancel_button.setEnabled(False)
        self.export_button = QPushButton("Export\u2026")
        self.export_button.setToolTip("Write the texts and vectors to a folder, in gpi_pack's format.")
        self.export_button.setEnabled(False)

        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self._count_prompts(0, 0)  # the bar may count tokens: the prompt count is kept beside it
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress_bar, 1)
        buttons.addWidget(self.export_button)
        return buttons

    def _make_labels(self) -> None:
        """The lines under the buttons: why Run is disabled, progress, status, and results made by other inputs."""
        self.progress_label = QLabel()
        self.blocker_label = QLabel()  # why Run is disabled, beside the button (not only in its tooltip)
        self.blocker_label.setWordWrap(True)
        self.blocker_label.setStyleSheet("color: #8a5a00;")
        self.blocker_label.hide()
        self.stale_label = QLabel()  # shown instead of the status when the results are not the inputs' (see set_stale)
        self.stale_label.setWordWrap(True)
        self.stale_label.setTextFormat(Qt.TextFormat.RichText)
        self.stale_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stale_label.setStyleSheet("color: #8a5a00; background: #fff4e0; padding: 6px;")
        self.stale_label.hide()
        self.template_note = QLabel()  # what the chat formatting does to the texts below, and the other choice
        self.template_note.setWordWrap(True)
        self.template_note.setTextFormat(Qt.TextFormat.RichText)
        self.template_note.setStyleSheet("color: palette(placeholder-text);")
        self.template_note.hide()
        self.status_label = QLabel(IDLE_HINT)
        self.status_label.setWordWrap(True)
        self.status_label.setTextFormat(Qt.TextFormat.RichText)
        self.status_label.setOpenExternalLinks(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)

    def _results_part(self) -> QSplitter:
        """The results table over the selected row's full prompt and text."""
        self.results = ResultsModel(parent=self)
        self.view = read_only_table(self.results)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().hide()  # the Row column says the row, as the exported files number it
        share_columns(self.view.horizontalHeader())
        self.view.selectionModel().selectionChanged.connect(self._selection_changed)
        self.set_repeat_task(False)

        self.detail_label = QLabel("Select a row to read its full texts side by side.")
        self.prompt_text = QPlainTextEdit()
        self.prompt_text.setReadOnly(True)
        self.generated_text = QPlainTextEdit()
        self.generated_text.setReadOnly(True)
        detail = QWidget()
        grid = QGridLayout(detail)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.detail_label, 0, 0, 1, 2)
        grid.addWidget(QLabel("Prompt"), 1, 0)
        grid.addWidget(QLabel("Generated text"), 1, 1)
        grid.addWidget(self.prompt_text, 2, 0)
        grid.addWidget(self.generated_text, 2, 1)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.view)
        splitter.addWidget(detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setChildrenCollapsible(False)
        return splitter

    # --- what the window tells the page --------------------------------------------------------

    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.cancel_button.setText("Stop")
        if running:
            self.export_button.setEnabled(False)

    def set_blocker(self, reason: str | None) -> None:
        """Enable Run, or disable it and say why next to it."""
        self.run_button.setEnabled(reason is None)
        self.run_button.setToolTip(reason or "Generate a text and a vector for every prompt.")
        self.blocker_label.setText(f"Run is not possible yet: {reason}" if reason else "")
        self.blocker_label.setVisible(reason is not None)

    def set_stale(self, text: str | None) -> None:
        """`text` (HTML): the results below belong to other inputs; None: they are the current inputs' own."""
        self.stale_label.setText(text or "")
        self.stale_label.setVisible(text is not None)
        self.status_label.setVisible(text is None)
        if text is not None:
            self.export_button.setEnabled(False)

    def set_cancelling(self) -> None:
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Stopping\u2026")
        self.status_label.setText("Stopping after the current step\u2026 finished texts are kept.")

    def set_template(self, style: str | None) -> None:
        """Say where the texts are shown what the chat formatting `style` does to them (None: no settings yet)."""
        self.template_note.setText(TEMPLATE_NOTES.get(style or "", ""))
        self.template_note.setVisible(style in TEMPLATE_NOTES)

    def set_repeat_task(self, repeat: bool) -> None:
        self.view.setColumnHidden(COL_MATCH, not repeat)

    def show_progress(self, progress: Progress) -> None:
        if progress.kind is not ProgressKind.PROMPTS:
            # A download (bytes, in its own words): QProgressBar counts in 32-bit ints, so show per mille.
            self.progress_bar.setFormat("%p%")
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(progress.fraction * 1000))
            self.progress_label.setText(progress.message)
            return
        self.prompts_done, self.prompts_total = progress.done, progress.total
        if progress.in_tokens:
            # The work in tokens (running prompts included), so the bar moves while a full batch writes.
            self.progress_bar.setFormat(f"{progress.done:,} of {progress.total:,} prompts \u00b7 %p%")
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(progress.fraction * 1000))
        else:
            self._count_prompts(progress.total, progress.done)
        self.progress_label.setText(progress_line(progress))
        if progress.running:
            self.results.show_writing(progress.running)
            position = self.selected_position()
            if position is not None and self.results.writing_at(position) is not None:
                self.show_detail(position)

    def _count_prompts(self, total: int, done: int) -> None:
        self.prompts_done, self.prompts_total = done, total
        self.progress_bar.setFormat(PROMPTS_FORMAT if total else NO_PROMPTS)  # not "0 of 1 prompts"
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)

    def reset_progress(self, total: int, done: int = 0) -> None:
        self._count_prompts(total, done)
        self.progress_label.setText("")

    def show_stopped_progress(self) -> None:
        """After Stop or a failure: the count stays, the speed and the time left go (nothing is running);
        the texts that were being written are waiting again."""
        self.results.clear_writing()
        self._count_prompts(self.prompts_total, self.prompts_done)
        self.progress_label.setText(progress_line(Progress(self.prompts_done, self.prompts_total)))

    def show_job_figures(self, text: str) -> None:
        self.progress_label.setText(text)

    def show_status(self, text: str, *, error: bool = False) -> None:
        self.status_label.setText(linkify(text))  # a hub error names the model page: make it clickable
        self.status_label.setStyleSheet("color: #b00020;" if error else "")

    # --- the detail view -------------------------------------------------------------------------

    def selected_position(self) -> int | None:
        rows = self.view.selectionModel().selectedRows()
        return rows[0].row() if rows else None

    def _selection_changed(self, selected: QItemSelection, _deselected: QItemSelection) -> None:
        position = self.selected_position()
        if position is not None:
            self.show_detail(position)

    def show_detail(self, position: int) -> None:
        result = self.results.result_at(position)
        prompt = self.results.prompt_at(position)
        if self.prompt_text.toPlainText() != prompt:  # kept as it is while the text beside it grows
            self.prompt_text.setPlainText(prompt)
        if result is None:
            writing = self.results.writing_at(position)
            if writing is None:
                self.detail_label.setText(f"Row {position} \u00b7 waiting: not generated yet")
                self.generated_text.clear()
            else:
                self.detail_label.setText(f"Row {position} \u00b7 being written: {writing.n_tokens:,} tokens so far")
                self.generated_text.setPlainText(writing.text)
            return
        parts = [
            f"Row {result.row}",
            f"{result.n_tokens} tokens",
            "stopped at the token limit (the text may be cut off)"
            if result.hit_limit
            else "the model ended the text itself",
        ]
        if not self.view.isColumnHidden(COL_MATCH):
            parts.append(f"{self.results.match_at(position):.0%} match with the input")
        self.detail_label.setText(" \u00b7 ".join(parts))
        self.generated_text.setPlainText(result.text)

"""Step 7: estimate the effect of a text feature from the export's vectors (GPI's estimator), with a report.

The export just written (or any export folder of GPI Desktop or gpi_pack) gives the vectors; the data defaults
to the prompts file the export was made from. The columns are read off the main thread; the estimate runs as an
`Operation` on the window's worker (progress: fold, epoch, validation loss; Stop), and its result and plots are
shown here. Nothing of the estimator (torch, matplotlib, pandas) is imported until it is used.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gpi_desktop.core.estimate.settings import EstimateRequest, EstimateSettings
from gpi_desktop.core.vocabulary.errors import GpiError
from gpi_desktop.core.vocabulary.progress import Progress
from gpi_desktop.ui.shared.error_words import failure_sentence, window_sentence
from gpi_desktop.ui.shared.folders import open_in_file_manager
from gpi_desktop.ui.shared.prompter import Prompter
from gpi_desktop.ui.shared.tasks import BackgroundCalls, Operation, TaskRunner
from gpi_desktop.ui.steps.estimate_results import EstimateResults

if TYPE_CHECKING:
    from gpi_desktop.core.estimate.pipeline import DataPreview

INTRO = (
    "Estimate the effect of a feature of the texts on an outcome, with GPI's estimator (gpi_pack's "
    "estimate_k_ate: cross-fitted TarNet, propensity model on the learned representation, doubly robust "
    "scores). Choose the export and the columns; the data is the prompts file the export was made from unless "
    "you choose another file with one row per vector."
)
NONE = "(none)"
IN_ORDER = "(none: rows in the export's order)"
CHOOSE = "(choose)"
TREATMENT_WORDS = ("treatment", "treated", "t", "condition", "arm")
OUTCOME_WORDS = ("outcome", "y", "response", "result")


def _guess(columns: list[str], words: tuple[str, ...]) -> int:
    for i, name in enumerate(columns):
        if name.strip().lower() in words:
            return i
    return -1


class EstimateStep(QWidget):
    estimated = Signal(object)  # the core.estimate.pipeline.EstimateResult

    def __init__(
        self,
        runner: TaskRunner,
        calls: BackgroundCalls,
        prompter: Prompter | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.runner, self.calls, self.prompter = runner, calls, prompter or Prompter()
        self.vectors: Path | None = None
        self.data: Path | None = None  # None: the export's prompts file
        self.look_in: tuple[Path, ...] = ()
        self.preview: DataPreview | None = None
        self._operation: Operation | None = None
        self._build()
        self._update()

    # --- layout ----------------------------------------------------------------------------------

    def _build(self) -> None:
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        self.vectors_edit = QLineEdit()
        self.vectors_edit.setReadOnly(True)
        self.vectors_edit.setPlaceholderText("export the run in step 6, or choose an export folder")
        self.vectors_button = QPushButton("Choose\u2026")
        self.vectors_button.clicked.connect(self._choose_vectors)
        self.data_edit = QLineEdit()
        self.data_edit.setReadOnly(True)
        self.data_button = QPushButton("Choose\u2026")
        self.data_button.clicked.connect(self._choose_data)
        self.treatment_combo, self.treated_combo, self.outcome_combo = QComboBox(), QComboBox(), QComboBox()
        self.id_combo, self.cluster_combo = QComboBox(), QComboBox()
        self.confounders_list = QListWidget()
        self.confounders_list.setMaximumHeight(self.confounders_list.fontMetrics().lineSpacing() * 5 + 8)
        self.treatment_combo.setToolTip("A column with exactly two values: treated and control.")
        self.treated_combo.setToolTip("Which of the treatment column's two values means treated.")
        self.outcome_combo.setToolTip("A column of numbers; rows with an empty cell are left out and counted.")
        self.id_combo.setToolTip("Pair the data's rows with the vectors by this column instead of by their order.")
        self.cluster_combo.setToolTip("Standard errors clustered by this column.")
        self.confounders_list.setToolTip(
            "Columns appended to the learned representation (text columns become 0/1 indicators)."
        )
        defaults = EstimateSettings()
        self.folds_spin = self._spin(2, 20, defaults.folds, "Cross-fitting folds (gpi_pack's default: 2).")
        self.seed_spin = self._spin(0, 2**31 - 1, defaults.seed, "The same seed gives the same numbers again.")
        self.epochs_spin = self._spin(
            1,
            10_000,
            defaults.epochs,
            "At most this many epochs per fold; training "
            "stops earlier once the validation loss stops improving (gpi_pack: 200).",
        )
        self.treatment_combo.currentIndexChanged.connect(self._treatment_changed)
        for combo in (self.treated_combo, self.outcome_combo):
            combo.currentIndexChanged.connect(self._update)

        form = QFormLayout()
        form.addRow("Export (vectors)", self._row(self.vectors_edit, self.vectors_button))
        form.addRow("Data", self._row(self.data_edit, self.data_button))
        form.addRow("Treatment column", self.treatment_combo)
        form.addRow("Treated value", self.treated_combo)
        form.addRow("Outcome column", self.outcome_combo)
        form.addRow("ID column", self.id_combo)
        form.addRow("Confounders", self.confounders_list)
        form.addRow("Cluster column", self.cluster_combo)
        settings = QHBoxLayout()
        for label, spin in (("Folds", self.folds_spin), ("Seed", self.seed_spin), ("Epochs", self.epochs_spin)):
            settings.addWidget(QLabel(label))
            settings.addWidget(spin)
        settings.addStretch(1)
        form.addRow("Settings", settings)

        self.estimate_button = QPushButton("Choose a report folder and estimate\u2026")
        self.estimate_button.clicked.connect(self._choose_report_folder)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.cancel)
        self.stop_button.hide()
        self.progress_bar = QProgressBar()
        self.progress_bar.hide()
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextFormat(Qt.TextFormat.RichText)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.results = EstimateResults()
        self.results.open_button.clicked.connect(self._open_report)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addLayout(self._row(self.estimate_button, self.stop_button, stretch=True))
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.results)
        layout.addStretch(1)

    @staticmethod
    def _spin(low: int, high: int, value: int, tip: str) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setValue(value)
        spin.setToolTip(tip)
        return spin

    @staticmethod
    def _row(*widgets: QWidget, stretch: bool = False) -> QHBoxLayout:
        row = QHBoxLayout()
        for widget in widgets:
            row.addWidget(widget, 0 if stretch else 1 if isinstance(widget, QLineEdit) else 0)
        if stretch:
            row.addStretch(1)
        return row

    @property
    def busy(self) -> bool:
        return self._operation is not None and self._operation.running

    # --- choosing the inputs ---------------------------------------------------------------------

    def use_export(self, folder: Path, prompts: Path | None = None) -> None:
        """The vectors of `folder`; `prompts`: the prompts file the window holds (its folder is looked in)."""
        self.vectors, self.data = Path(folder), None
        self.look_in = (Path(prompts).parent,) if prompts is not None else ()
        self.vectors_edit.setText(str(folder))
        self._read_columns()

    def set_data_file(self, path: Path | None) -> None:
        self.data = Path(path) if path is not None else None
        self._read_columns()

    def _choose_vectors(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose an export folder", str(self.vectors or ""))
        if folder:
            self.use_export(Path(folder))

    def _choose_data(self) -> None:
        start = str(self.data or self.vectors or "")
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose the data file", start, "Tables (*.csv *.tsv *.tab *.txt *.xlsx *.xlsm)"
        )
        if path:
            self.set_data_file(Path(path))

    def _read_columns(self) -> None:
        from gpi_desktop.core.estimate.pipeline import preview_data

        if self.vectors is None:
            return
        self.preview = None
        self._fill_columns([])
        self.data_edit.setText(str(self.data) if self.data else "reading\u2026")
        vectors, data, look_in = self.vectors, self.data, self.look_in
        self.calls.call(lambda: preview_data(vectors, data, look_in), self._on_preview, self._on_preview_failed)

    def _on_preview(self, preview) -> None:
        self.preview = preview
        self.data_edit.setText(str(preview.path))
        self._fill_columns(preview.columns)
        self.status_label.setText(
            f"{preview.n_vectors:,} vectors; {len(preview.frame):,} data rows in {html.escape(preview.path.name)}."
        )

    def _on_preview_failed(self, error: BaseException) -> None:
        self.data_edit.setText(str(self.data or ""))
        self.status_label.setText(
            f"<span style='color:#b00020'>{html.escape(failure_sentence(error, 'The data could not be read'))}</span>"
        )
        self._update()

    def _fill_columns(self, columns: list[str]) -> None:
        for combo, first in (
            (self.treatment_combo, CHOOSE),
            (self.outcome_combo, CHOOSE),
            (self.id_combo, IN_ORDER),
            (self.cluster_combo, NONE),
        ):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([first, *columns])
            combo.blockSignals(False)
        self.treatment_combo.setCurrentIndex(_guess(columns, TREATMENT_WORDS) + 1)
        self.outcome_combo.setCurrentIndex(_guess(columns, OUTCOME_WORDS) + 1)
        self.confounders_list.clear()
        for name in columns:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.confounders_list.addItem(item)
        self._treatment_changed()

    def _treatment_changed(self, *_args) -> None:
        from gpi_desktop.core.estimate.columns import treatment_values

        self.treated_combo.blockSignals(True)
        self.treated_combo.clear()
        column = self._chosen(self.treatment_combo)
        if column and self.preview is not None:
            values = treatment_values(self.preview.frame, column)
            self.treated_combo.addItems([CHOOSE, *values])
            if sorted(values) in (["0", "1"], ["0.0", "1.0"]):
                self.treated_combo.setCurrentIndex(1 + values.index(max(values)))
        self.treated_combo.blockSignals(False)
        self._update()

    @staticmethod
    def _chosen(combo: QComboBox) -> str | None:
        return combo.currentText() if combo.currentIndex() > 0 else None

    def _update(self, *_args) -> None:
        busy = self.busy
        ready = (
            self.preview is not None
            and self._chosen(self.treatment_combo) is not None
            and self._chosen(self.treated_combo) is not None
            and self._chosen(self.outcome_combo) is not None
        )
        self.estimate_button.setEnabled(ready and not busy)
        for widget in (
            self.vectors_button,
            self.data_button,
            self.treatment_combo,
            self.treated_combo,
            self.outcome_combo,
            self.id_combo,
            self.cluster_combo,
            self.confounders_list,
            self.folds_spin,
            self.seed_spin,
            self.epochs_spin,
        ):
            widget.setEnabled(not busy)

    def request(self) -> EstimateRequest:
        """What the form asks for; raises a GpiError (a setting out of range) in one sentence."""
        confounders = tuple(
            self.confounders_list.item(i).text()
            for i in range(self.confounders_list.count())
            if self.confounders_list.item(i).checkState() == Qt.CheckState.Checked
        )
        settings = EstimateSettings(
            folds=self.folds_spin.value(), seed=self.seed_spin.value(), epochs=self.epochs_spin.value()
        )
        treatment, outcome = self._chosen(self.treatment_combo), self._chosen(self.outcome_combo)
        if self.vectors is None or self.preview is None or treatment is None or outcome is None:
            raise RuntimeError("an estimate was asked for before its form was complete")  # the button is off till then
        return EstimateRequest(
            vectors=self.vectors,
            data=self.preview.path,
            treatment=treatment,
            outcome=outcome,
            treated=self._chosen(self.treated_combo),
            id_column=self._chosen(self.id_combo),
            confounders=confounders,
            cluster=self._chosen(self.cluster_combo),
            settings=settings,
        )

    # --- estimating ------------------------------------------------------------------------------

    def _choose_report_folder(self) -> None:
        start = str(self.vectors.parent / "estimate") if self.vectors is not None else ""
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder for the report", start)
        if folder:
            self.estimate_to(Path(folder))

    def estimate_to(self, folder: Path) -> bool:
        """Estimate in the worker and write the report to `folder`; asks before replacing an earlier report."""
        from gpi_desktop.core.estimate.report import check_report_folder

        try:
            request = self.request()
            check_report_folder(folder, overwrite=False)
            overwrite = False
        except GpiError as error:
            if getattr(error, "remedy", None) is None or not folder.is_dir():
                self._say_error(window_sentence(error))
                return False
            choice = self.prompter.ask(
                self,
                "The folder is not empty",
                f"{error.what}. Replace the report's files in it? Other files are left as they are.",
                ["Replace", "Cancel"],
                default=1,
            )
            if choice != 0:
                return False
            request, overwrite = self.request(), True
        look_in = self.look_in

        def task(state):
            from gpi_desktop.core.estimate.plots import loss_figure, propensity_figure
            from gpi_desktop.core.estimate.run import run_estimate

            result = run_estimate(request, folder, state, overwrite=overwrite, also_look_in=look_in)
            figures = (
                propensity_figure(result.design, result.estimate, request.settings.trim),
                loss_figure(result.estimate.losses),
            )
            return result, figures, folder

        self._operation = (
            Operation(self.runner, task)
            .on_status(lambda text: self.status_label.setText(html.escape(text)))
            .on_progress(self._show_progress)
            .on_end(self._ended)
            .success(self._succeeded)
            .failure(lambda error: self._say_error(failure_sentence(error, "The estimate failed")))
            .on_cancelled(lambda: self.status_label.setText("Stopped; no report was written."))
        )
        if not self._operation.start():
            self._say_error("The window is busy with a run or an export: estimate when it has finished.")
            return False
        self.results.hide()
        self.progress_bar.setRange(0, 0)
        self.progress_bar.show()
        self.stop_button.show()
        self._update()
        return True

    def cancel(self) -> None:
        if self._operation is not None:
            self._operation.cancel()
            self.status_label.setText("Stopping\u2026")

    def _show_progress(self, progress: Progress) -> None:
        self.progress_bar.setRange(0, progress.total)
        self.progress_bar.setValue(progress.done)
        if progress.message:
            self.status_label.setText(html.escape(progress.message))

    def _ended(self) -> None:
        self.progress_bar.hide()
        self.stop_button.hide()
        self._update()

    def _succeeded(self, outcome) -> None:
        result, figures, folder = outcome
        self.status_label.setText("Done.")
        self.results.show_result(result, figures, folder)
        self.estimated.emit(result)

    def _say_error(self, sentence: str) -> None:
        self.status_label.setText(f"<span style='color:#b00020'>{html.escape(sentence)}</span>")

    def _open_report(self) -> None:
        if self.results.folder is not None:
            where = open_in_file_manager(self.results.folder)
            if where is not None:
                self.prompter.tell(self, "Open the folder", where)

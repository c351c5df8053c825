""" "Prepare for a cluster" (write a SLURM job folder) and "Merge cluster results" (shard folders -> one export).

Both are thin: the job folder comes from core.cluster.sbatch.write_job_folder, the
merge from core.cluster.shards.merge_shards, run in a TaskRunner worker so the window
stays responsive and the merge can be stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gpi_desktop.core.cluster.review import most_useful_tasks, review_job
from gpi_desktop.core.cluster.sbatch import ClusterSettings, write_job_folder
from gpi_desktop.core.vocabulary.errors import GpiError, NoResultsFolderError
from gpi_desktop.core.vocabulary.progress import Progress
from gpi_desktop.ui.shared.error_words import failure_sentence, window_sentence
from gpi_desktop.ui.shared.folders import open_in_file_manager
from gpi_desktop.ui.shared.screen_fit import fit_dialog
from gpi_desktop.ui.shared.tasks import Operation, TaskRunner

PREPARE_TITLE = "Prepare for a cluster"
MERGE_TITLE = "Merge cluster results"
_ERROR_STYLE = "color: #b00020;"


def _merge_failure(error: BaseException) -> str:
    if isinstance(error, NoResultsFolderError) and not error.job_folder:
        # The command line's words (shard.json, --shard) mean nothing in the window: speak of the job's folders.
        return (
            f"'{error.folder}' is neither a job folder made by \u201cPrepare for a cluster\u201d nor one of its "
            "result folders (shards/1, shards/2, \u2026): choose the job folder you copied back from the cluster."
        )
    return failure_sentence(error, "The shards could not be merged")


def _write_job_folder(folder: Path, spec, cluster: ClusterSettings, state):
    """In the worker: the token (keyring) and the Hub may be slow; pinning the model's commit needs them."""
    from gpi_desktop.core.hub.secrets import find_token

    state.set_status("Writing the job folder (and pinning the model's version)…")
    return write_job_folder(folder, spec, cluster, token=find_token().token)


def _folder_row(edit: QLineEdit, button: QPushButton) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    row.addWidget(button)
    return row


class _WorkerDialog(QDialog):
    """A dialog whose `runner` writes files: it stays open while the work runs (Stop first)."""

    runner: TaskRunner

    def done(self, result: int) -> None:
        if self.runner.is_busy():
            return  # closing mid-write would leave half a folder; a stopped task rolls back what it wrote
        self.runner.shutdown()
        super().done(result)

    def closeEvent(self, event) -> None:
        if self.runner.is_busy():
            event.ignore()
            return
        self.runner.shutdown()  # a QThread must end before its owner is destroyed
        super().closeEvent(event)


class PrepareClusterDialog(_WorkerDialog):
    """Fields for the SLURM script, then a job folder and plain instructions."""

    written = Signal(object)  # core.cluster.sbatch.JobFolder

    def __init__(self, spec, rows: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.rows = rows
        self.job_folder = None
        self.runner = TaskRunner("gpi-job-folder", self)
        self.setWindowTitle(PREPARE_TITLE)
        fit_dialog(self, QSize(720, 640))
        intro = QLabel(
            f"Split this job ({rows:,} prompts, model {spec.settings.model}) into tasks that a SLURM cluster runs "
            "at the same time, one shard of the prompts each. The program writes a folder to copy to the cluster; "
            "afterwards, Merge cluster results turns the shards into one export folder."
        )
        intro.setWordWrap(True)
        form = self._make_fields(ClusterSettings(), Path(spec.prompts_path))
        adjust = QLabel(
            "Clusters differ: check these against your cluster's help pages before you submit. A CPU-only partition "
            "needs 0 GPUs; partition, account, QOS, GPU type, memory, cores and time must be within its limits, or "
            "the job is refused or waits forever. The same lines can be edited later at the top of run.sbatch "
            "(README.txt, step 3, says which)."
        )
        adjust.setWordWrap(True)
        self._make_messages()
        buttons = self._make_buttons()
        self._lay_out(intro, form, adjust, buttons)
        self.runner.busy_changed.connect(lambda busy: self.write_button.setEnabled(not busy))
        self._show_warnings()

    def _make_fields(self, defaults: ClusterSettings, prompts: Path) -> QFormLayout:
        """The SLURM script's fields, filled with the defaults, in the form they are shown in."""
        self.tasks = QSpinBox()
        self.tasks.setRange(1, 10_000)
        # No more tasks than get prompts (rows go out in groups when the batch size is fixed).
        self.tasks.setValue(most_useful_tasks(self.rows, defaults.shards, self.spec.settings))
        self.tasks.setToolTip("How many tasks (machines) share the prompts.")
        self.gpus = QSpinBox()
        self.gpus.setRange(0, 16)
        self.gpus.setValue(defaults.gpus_per_task)
        self.gpus.setToolTip(
            "GPUs each task asks for; 0 runs on the CPU only (needed on a CPU-only partition). "
            "A 70B model needs several."
        )
        self.gpu_type = QLineEdit()
        self.gpu_type.setPlaceholderText("optional, e.g. a100 (some clusters require a type)")
        self.gpu_option = QComboBox()
        self.gpu_option.addItem("--gres=gpu:N (most clusters)", "gres")
        self.gpu_option.addItem("--gpus=N", "gpus")
        self.gpu_option.setToolTip("How your cluster's help pages ask for GPUs.")
        self.throttle = QSpinBox()
        self.throttle.setRange(0, 10_000)
        self.throttle.setSpecialValueText("no limit")
        self.throttle.setToolTip("At most this many tasks run at once (--array=1-N%K); some clusters ask for it.")
        self.time = QLineEdit(defaults.time)
        self.time.setToolTip("The most each task may run, hours:minutes:seconds (or days-hours:minutes:seconds).")
        self.memory = QLineEdit(defaults.memory)
        self.memory.setToolTip("Memory (RAM) for each task, for example 64G.")
        self.cpus = QSpinBox()
        self.cpus.setRange(1, 256)
        self.cpus.setValue(defaults.cpus_per_task)
        self.cache = QLineEdit()
        self.cache.setPlaceholderText("empty: the cluster's default (~/.cache/huggingface)")
        self.cache.setToolTip(
            "Where the model's files are (or will be downloaded) on the cluster, e.g. a scratch folder."
        )
        self.partition = QLineEdit()
        self.partition.setPlaceholderText("optional, as your cluster's help pages name it")
        self.account = QLineEdit()
        self.account.setPlaceholderText("optional")
        self.qos = QLineEdit()
        self.qos.setPlaceholderText("optional (quality of service), as your cluster names it")
        self.command = QLineEdit(defaults.command)
        self.command.setToolTip("How GPI Desktop is started on the cluster.")
        self.setup = QPlainTextEdit()
        self.setup.setPlaceholderText(
            "optional commands run first, for example:\nmodule load cuda\nsource ~/gpi/bin/activate"
        )
        self.setup.setFixedHeight(70)
        self.folder = QLineEdit(str(prompts.parent / f"{prompts.stem}-cluster-job"))
        choose = QPushButton("Choose…")
        choose.clicked.connect(self._choose_folder)

        form = QFormLayout()
        form.addRow("Tasks:", self.tasks)
        form.addRow("GPUs per task:", self.gpus)
        form.addRow("GPU type:", self.gpu_type)
        form.addRow("GPU request:", self.gpu_option)
        form.addRow("Time limit per task:", self.time)
        form.addRow("Memory per task:", self.memory)
        form.addRow("CPU cores per task:", self.cpus)
        form.addRow("Model cache on the cluster:", self.cache)
        form.addRow("Partition:", self.partition)
        form.addRow("Account:", self.account)
        form.addRow("QOS:", self.qos)
        form.addRow("Tasks at once:", self.throttle)
        form.addRow("Program command:", self.command)
        form.addRow("Setup commands:", self.setup)
        form.addRow("Job folder (new):", _folder_row(self.folder, choose))
        return form

    def _make_messages(self) -> None:
        """The warning, the error and the instructions shown after writing, all hidden until there is something."""
        self.split = QLabel()  # how the prompts go to the tasks
        self.split.setWordWrap(True)
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.hide()
        self.tasks.valueChanged.connect(self._show_warnings)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(_ERROR_STYLE)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        self.instructions = QPlainTextEdit()
        self.instructions.setReadOnly(True)
        self.instructions.setFont(QFont("monospace"))
        self.instructions.hide()

    def _make_buttons(self) -> QHBoxLayout:
        self.write_button = QPushButton("Write the job folder")
        self.write_button.setDefault(True)
        self.write_button.clicked.connect(self.write)
        self.open_button = QPushButton("Open the folder")
        self.open_button.setEnabled(False)
        self.open_button.clicked.connect(self._open_folder)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.write_button)
        buttons.addWidget(self.open_button)
        buttons.addWidget(close)
        return buttons

    def _lay_out(self, intro: QLabel, form: QFormLayout, adjust: QLabel, buttons: QHBoxLayout) -> None:
        # The fields scroll rather than push the buttons off a small screen (1366x768 at 150-200%).
        fields = QWidget()
        fields_layout = QVBoxLayout(fields)
        fields_layout.setContentsMargins(0, 0, 0, 0)
        fields_layout.addLayout(form)
        fields_layout.addWidget(adjust)
        scroll = QScrollArea()
        scroll.setWidget(fields)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(scroll, 2)
        layout.addWidget(self.split)
        layout.addWidget(self.warning)  # outside the scrolling part: it must be seen
        layout.addWidget(self.error)
        layout.addWidget(self.instructions, 1)
        layout.addLayout(buttons)

    def _show_warnings(self) -> None:
        """The checks `gpi-desktop prepare` prints too (core.cluster.review): what will be refused, else the warnings."""
        try:
            review = review_job(self.rows, ClusterSettings(shards=self.tasks.value()), self.spec.settings)
        except GpiError as error:  # what Write would refuse, in red
            messages, split, style = [window_sentence(error)], "", _ERROR_STYLE
        else:
            messages, split, style = list(review.warnings), review.unit_sentence, ""
        self.split.setText(split)
        self.split.setVisible(bool(split))
        self.warning.setStyleSheet(style)
        self.warning.setText(" ".join(messages))
        self.warning.setVisible(bool(messages))

    def cluster_settings(self) -> ClusterSettings:
        return ClusterSettings(
            shards=self.tasks.value(),
            gpus_per_task=self.gpus.value(),
            time=self.time.text().strip(),
            memory=self.memory.text().strip(),
            cpus_per_task=self.cpus.value(),
            model_cache=self.cache.text().strip(),
            partition=self.partition.text().strip(),
            account=self.account.text().strip(),
            qos=self.qos.text().strip(),
            gpu_type=self.gpu_type.text().strip(),
            gpu_option=self.gpu_option.currentData(),
            array_throttle=self.throttle.value(),
            command=self.command.text().strip(),
            setup=self.setup.toPlainText(),
        )

    def write(self) -> bool:
        """Check the fields here, then write the folder in the worker (pinning the model's commit may use the network)."""
        from gpi_desktop.core.output.export import check_output_folder

        self.error.hide()
        folder = self.folder.text().strip()
        if not folder:
            return self._fail("Choose a new folder for the job.")
        if self.runner.is_busy():
            return False
        try:
            cluster = self.cluster_settings().validate()
            check_output_folder(Path(folder), overwrite=False)
        except GpiError as error:
            return self._fail(window_sentence(error))
        spec = self.spec
        return (
            Operation(self.runner, lambda state: _write_job_folder(Path(folder), spec, cluster, state))
            .success(self._on_written)
            .failure(self._on_failed)
            .start()
        )

    def _on_written(self, job) -> None:
        self.job_folder = job
        self.instructions.setPlainText(job.readme.read_text(encoding="utf-8"))
        self.instructions.show()
        self.open_button.setEnabled(True)
        self.write_button.setEnabled(False)
        self.written.emit(job)

    def _on_failed(self, error: BaseException) -> None:
        if isinstance(error, OSError) and not isinstance(error, GpiError):
            self._fail(
                f"The job folder could not be written ({getattr(error, 'strerror', None) or error}): "
                "choose a folder where you may write."
            )
        else:
            self._fail(failure_sentence(error, "The job folder could not be written"))

    def _fail(self, text: str) -> bool:
        self.error.setText(text)
        self.error.setStyleSheet(_ERROR_STYLE)
        self.error.show()
        return False

    def _choose_folder(self) -> None:
        current = Path(self.folder.text().strip() or ".")
        parent = QFileDialog.getExistingDirectory(self, "Where to create the job folder", str(current.parent))
        if parent:
            self.folder.setText(str(Path(parent) / current.name))

    def _open_folder(self) -> None:
        if self.job_folder is not None:
            where = open_in_file_manager(self.job_folder.folder)
            if where is not None:
                self.error.setText(where)
                self.error.setStyleSheet("")
                self.error.show()


class MergeShardsDialog(_WorkerDialog):
    """Pick the job (or shards) folder and a new export folder; the merge runs in a worker and can be stopped."""

    merged = Signal(object)  # core.output.export.ExportSummary

    def __init__(self, parent: QWidget | None = None, start_folder: Path | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(MERGE_TITLE)
        fit_dialog(self, QSize(640, 300))
        self.summary = None
        self.runner = TaskRunner("gpi-merge", self)
        intro = QLabel(
            "Choose the job folder you copied back from the cluster (or its shards folder), and a new folder for "
            "the export. The merge checks that every prompt is there exactly once and that all tasks ran the same "
            "job, then writes the same export folder a run on one machine writes."
        )
        intro.setWordWrap(True)
        self.shards = QLineEdit(str(start_folder) if start_folder else "")
        choose_shards = QPushButton("Choose…")
        choose_shards.clicked.connect(self._choose_shards)
        self.out = QLineEdit()
        choose_out = QPushButton("Choose…")
        choose_out.clicked.connect(self._choose_out)
        form = QFormLayout()
        form.addRow("Job or shards folder:", _folder_row(self.shards, choose_shards))
        form.addRow("Export folder (new or empty):", _folder_row(self.out, choose_out))
        self.allow_mixed = QCheckBox("Merge shards that ran on different devices or precisions")
        self.allow_mixed.setToolTip(
            "Greedy texts can differ between a GPU and a CPU, or bfloat16 and float32; "
            "the manifest records each shard's device."
        )
        form.addRow("", self.allow_mixed)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.merge_button = QPushButton("Merge")
        self.merge_button.setDefault(True)
        self.merge_button.clicked.connect(self.merge)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.runner.cancel)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.accept)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for button in (self.merge_button, self.stop_button, self.close_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status, 1)
        layout.addLayout(buttons)

        self.runner.busy_changed.connect(self._on_busy)

    def merge(self) -> bool:
        from gpi_desktop.core.cluster.shards import merge_shards

        shards, out = self.shards.text().strip(), self.out.text().strip()
        if not shards or not out:
            self._show("Choose the job folder and a folder for the export first.", error=True)
            return False
        if self.runner.is_busy():
            return False
        self._show("Merging…")
        allow_mixed = self.allow_mixed.isChecked()
        merging = Operation(
            self.runner,
            lambda state: merge_shards([Path(shards)], Path(out), state=state, allow_mixed_devices=allow_mixed),
        )
        return (
            merging.on_progress(self._on_progress)
            .on_status(self._show)
            .success(self._on_merged)
            .failure(lambda error: self._show(_merge_failure(error), error=True))
            .on_cancelled(lambda: self._show("Stopped; nothing was written. Press Merge to start again."))
            .start()
        )

    def is_busy(self) -> bool:
        return self.runner.is_busy()

    def _on_busy(self, busy: bool) -> None:
        self.merge_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)
        self.close_button.setEnabled(not busy)

    def _on_progress(self, progress: Progress) -> None:
        self.progress.setRange(0, max(progress.total, 1))
        self.progress.setValue(progress.done)

    def _on_merged(self, summary) -> None:
        self.summary = summary
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self._show(
            f"Merged {summary.n_rows:,} texts and hidden states into {summary.folder}. "
            "It is the same export folder a run on one machine writes, ready for gpi_pack."
        )
        self.merged.emit(summary)

    def _show(self, text: str, *, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(_ERROR_STYLE if error else "")

    def _choose_shards(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "The job folder (or its shards folder)", self.shards.text())
        if folder:
            self.shards.setText(folder)
            if not self.out.text().strip():
                self.out.setText(str(Path(folder) / "export"))

    def _choose_out(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A new or empty folder for the export", self.out.text())
        if folder:
            self.out.setText(folder)


def install_cluster_menu(window: QMainWindow, current_job: Callable[[], tuple[object, int] | str]) -> None:
    """Add a Cluster menu to `window`. `current_job()` gives (JobSpec, rows) or why there is no job yet."""
    menu = window.menuBar().addMenu("&Cluster")
    prepare = menu.addAction("Prepare for a cluster…")
    merge = menu.addAction("Merge cluster results…")

    def open_prepare() -> None:
        job = current_job()
        if isinstance(job, str):
            from PySide6.QtWidgets import QMessageBox

            QMessageBox.information(window, PREPARE_TITLE, job)
            return
        spec, rows = job
        dialog = PrepareClusterDialog(spec, rows, window)
        dialog.exec()
        dialog.deleteLater()

    def open_merge() -> None:
        dialog = MergeShardsDialog(window)
        dialog.exec()
        dialog.deleteLater()

    prepare.triggered.connect(open_prepare)
    merge.triggered.connect(open_merge)
    window.cluster_menu = menu  # type: ignore[attr-defined]


def main_window_job(window) -> tuple[object, int] | str:
    """The job the main window would run now, or the reason it has none (what the window itself would say)."""
    from gpi_desktop.core.job.job import JobSpec

    blocker = window.run_blocker()
    if blocker:
        return blocker
    table = window.prompts_panel.table
    try:
        run, export = window.settings_panel.values(model=window.model_panel.model())
    except GpiError as error:
        return window_sentence(error)
    return JobSpec(Path(table.path), table.column, run, export, table.sheet), len(table)

"""The main window: six steps in the order a researcher works, and the one run at a time.

The window holds no engine logic. It builds a `JobSpec` from the panels, runs
`core.job.job.run_job` / `export_run` through the `TaskRunner` (one worker on a
QThread) and shows what comes back. Each job keeps its journal in the app data
folder under runs/<job hash>, so a run stopped for any reason continues later.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QMargins, QRect, QSettings, Qt, Signal
from PySide6.QtGui import (
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QFont,
    QGuiApplication,
    QIcon,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from gpi_desktop.core.files.legacy_runs import adopt_job_folders
from gpi_desktop.core.job.job import RUNS_DIRNAME
from gpi_desktop.core.vocabulary.errors import GpiError, MemoryFitError, Remedy
from gpi_desktop.core.vocabulary.progress import Progress, ProgressKind
from gpi_desktop.core.vocabulary.settings import DEFAULT_MODEL, ExportSettings
from gpi_desktop.ui.shared import none_guard, prefs
from gpi_desktop.ui.steps.export_flow import (
    folder_has_files,
    gpi_pack_snippet,
    job_html,
    made_with_html,
    overwrite_question,
    stale_html,
)
from gpi_desktop.ui.steps.export_folder_dialog import ExportFolderDialog, documents_folder
from gpi_desktop.ui.shared.error_words import failure_sentence, window_sentence
from gpi_desktop.ui.steps.estimate_step import EstimateStep
from gpi_desktop.ui.steps.export_step import ExportPage
from gpi_desktop.ui.shared.folders import open_in_file_manager
from gpi_desktop.ui.shared.formatting import job_figures_line, settings_words
from gpi_desktop.ui.steps.model_step import ModelPanel
from gpi_desktop.ui.shared.prompter import Prompter
from gpi_desktop.ui.steps.prompts_step import DROP_SUFFIXES, PromptsPanel
from gpi_desktop.ui.shared.resources import (
    APPLICATION,
    app_data_dir,
    icon_path,
    is_demo_model,
    legacy_data_dirs,
)
from gpi_desktop.ui.steps.run_step import RunPage
from gpi_desktop.ui.shared.screen_fit import FRAME_ALLOWANCE, PREFERRED_SIZE, centred, fitted_geometry
from gpi_desktop.ui.steps.settings_step import SettingsPanel
from gpi_desktop.ui.shared.tasks import BackgroundCalls, Operation, TaskRunner
from gpi_desktop.ui.steps.token_step import TokenPanel
from gpi_desktop.ui.unfinished_bar import UnfinishedBar

log = logging.getLogger(__name__)

STEP_ACCESS, STEP_MODEL, STEP_PROMPTS, STEP_SETTINGS, STEP_RUN, STEP_EXPORT, STEP_ESTIMATE = range(7)
STEP_TITLES = ("Hugging Face access", "Model", "Prompts", "Settings", "Run and preview", "Export", "Estimate the effect")
CLOSE_WAIT_S = 5.0  # for a model check or keyring call still out when the window closes


@dataclass(frozen=True)
class PendingRun:
    """A run the user asked for, between the journal check and its start."""

    spec: object  # core.job.job.JobSpec
    table: object  # core.files.prompts.PromptTable
    work_dir: Path
    finished: int | None  # prompts already in this job's journal, None when there is none
    key: dict  # core.job.job.job_key: what the results of this run will belong to
    finished_results: tuple = ()  # the journal's finished rows, for the table (their vectors left on disk)


def _inspect_job(spec, table, runs_dir: Path, elsewhere: tuple[Path, ...] = ()) -> PendingRun:
    """Where this job keeps its journal and how far it got (runs off the main thread: it reads the journal).

    `elsewhere`: older runs folders whose jobs could not be moved into `runs_dir`.
    """
    from gpi_desktop.core.files.runstore import RunJournal
    from gpi_desktop.core.job.job import job_journal_folder, job_key

    key = job_key(spec, table)
    work_dir = job_journal_folder(runs_dir, spec, table, elsewhere)
    finished, results = None, ()
    if RunJournal.exists(work_dir):
        with RunJournal.open(work_dir, key) as journal:
            finished = len(journal)
            results = tuple(journal.results(vectors=False).values())
    return PendingRun(spec, table, work_dir, finished, key, results)


class MainWindow(QMainWindow):
    run_finished = Signal(object)  # RunOutcome
    run_failed = Signal(str)  # why a run did not finish (refused, failed or stopped), in plain words
    export_finished = Signal(object)  # the export folder (Path)

    def __init__(self, settings: QSettings | None = None, *, data_dir: Path | None = None,
                 prompter: Prompter | None = None, legacy_dirs: list[Path] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.qsettings = settings if settings is not None else QSettings()
        self.runs_dir = (data_dir if data_dir is not None else app_data_dir()) / RUNS_DIRNAME
        # Jobs an older version kept elsewhere: moved here (a rename), or looked up where they are.
        if legacy_dirs is None:
            legacy_dirs = legacy_data_dirs() if data_dir is None else []
        self.old_runs_dirs = tuple(old / RUNS_DIRNAME for old in legacy_dirs
                                   if adopt_job_folders(old / RUNS_DIRNAME, self.runs_dir))
        self.prompter = prompter or Prompter()
        self.outcome = None  # the last finished run (core.job.job.RunOutcome)
        self.last_export: Path | None = None
        self._run: Operation | None = None  # the run last started (running while the worker generates)
        self._starting = False  # between Run and the start of the worker (the journal check)
        self._prompts_done = 0  # the last prompt count the run reported (resumed prompts included)
        self._close_when_idle = False
        self._stopped_here: set[Path] = set()  # work dirs this session stopped: continue them without asking
        self._run_work_dir: Path | None = None  # the journal of the run in the preview
        self._launched: PendingRun | None = None  # the run last started, to start again when the user insists
        self._shown: PendingRun | None = None  # the job whose results are in the preview (finished or not)
        self._shown_changes: tuple | None = None  # what the window last said about them (see _show_freshness)
        self._export_settings: ExportSettings | None = None  # the file names of the export under way
        self._reopening = None  # the core.job.job.UnfinishedJob being reopened, until its prompts file is read

        self.setWindowTitle(APPLICATION)
        if icon_path().is_file():
            self.setWindowIcon(QIcon(str(icon_path())))
        self.setAcceptDrops(True)

        self._none_guard = none_guard.install(self)
        self.calls = BackgroundCalls(self)
        self.runner = TaskRunner("gpi-run", self)
        self.token_panel = TokenPanel(self.calls)
        self.model_panel = ModelPanel(self.calls)
        self.prompts_panel = PromptsPanel(self.calls)
        self.settings_panel = SettingsPanel()
        self.run_page = RunPage()
        self.export_page = ExportPage()
        self.estimate_step = EstimateStep(self.runner, self.calls, self.prompter)
        self.unfinished_bar = UnfinishedBar()
        self._build_layout()
        self._connect()
        self._restore()
        self.token_panel.refresh()  # the model check is already on its way: _restore set the model
        self._refresh()
        self._look_for_unfinished_jobs()

    # --- layout ----------------------------------------------------------------------------------

    def _build_layout(self) -> None:
        self.steps = QListWidget()
        self.steps.setFixedWidth(240)
        self.steps.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.steps.setSpacing(2)
        self.steps.setStyleSheet("QListWidget { font-size: 14px; } QListWidget::item { padding: 8px 6px; }")
        self.pages = QStackedWidget()
        bodies = (self.token_panel, self.model_panel, self.prompts_panel, self.settings_panel,
                  self.run_page, self.export_page, self.estimate_step)
        for i, (title, body) in enumerate(zip(STEP_TITLES, bodies)):
            self.steps.addItem(f"{i + 1}  {title}")
            self.pages.addWidget(self._page(i, title, body))
        self.steps.currentRowChanged.connect(self.pages.setCurrentIndex)
        self.steps.setCurrentRow(STEP_ACCESS)

        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.unfinished_bar)
        layout = QHBoxLayout()
        outer.addLayout(layout, 1)
        layout.addWidget(self.steps)
        layout.addWidget(self.pages, 1)
        self.setCentralWidget(central)
        self.resize(PREFERRED_SIZE)
        self._build_menus()

    def _build_menus(self) -> None:
        from gpi_desktop.ui.cluster.dialogs import install_cluster_menu, main_window_job

        install_cluster_menu(self, lambda: main_window_job(self))
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("Guide (two minutes)", self.show_guide)
        help_menu.addAction("Open the log folder", self.open_log_folder)
        help_menu.addAction(f"About {APPLICATION}", self.show_about)

    def open_log_folder(self) -> None:
        from gpi_desktop.logs import log_dir

        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self._open_folder(folder)

    def _open_folder(self, folder: Path) -> None:
        where = open_in_file_manager(folder)
        if where is not None:
            self.prompter.tell(self, "Open the folder", where)

    def show_guide(self) -> None:
        from gpi_desktop.ui.guide import GuideDialog

        try:
            _run, export = self.settings_panel.values(model=self.model_panel.model() or DEFAULT_MODEL)
        except GpiError:
            export = None  # a half-typed option line: the guide names the default file names
        self.guide = GuideDialog(self.runs_dir, export, self)
        self.guide.show()

    def show_about(self) -> None:
        import gpi_desktop

        self.prompter.tell(self, f"About {APPLICATION}", (
            f"{APPLICATION} {gpi_desktop.__version__}\n\n"
            "Generates a text and one vector of the model's hidden states per prompt, and exports them exactly as "
            "gpi_pack's extract_and_save_hidden_states does, for GenAI-Powered Inference (GPI).\n\n"
            "Problems are written to the log file (Help \u2192 Open the log folder); it never holds your token."))

    def _page(self, index: int, title: str, body: QWidget) -> QWidget:
        heading = QLabel(f"{index + 1}. {title}")
        font = QFont(heading.font())
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        heading.setFont(font)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(heading)
        # Every step scrolls rather than clips, so that each control stays reachable on a small or scaled screen.
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(body)
        layout.addWidget(scroll, 1)
        if index < STEP_ESTIMATE:
            button = QPushButton(f"Next: {STEP_TITLES[index + 1]} \u2192")
            button.clicked.connect(lambda _=False, i=index: self.go_to(i + 1))
            row = QHBoxLayout()
            row.addStretch(1)
            row.addWidget(button)
            layout.addLayout(row)
        return page

    def go_to(self, step: int) -> None:
        self.steps.setCurrentRow(step)

    def _connect(self) -> None:
        self.model_panel.model_changed.connect(self._refresh)
        self.model_panel.target_checked.connect(self._refresh)
        self.model_panel.set_token_source(_current_token)
        self.prompts_panel.set_token_source(_current_token)
        # A measure that failed (no token yet for a gated model, the Hub unreachable) is tried again on these.
        self.model_panel.target_checked.connect(lambda _check: self.prompts_panel.measure_again())
        self.token_panel.token_changed.connect(lambda _info: self.prompts_panel.measure_again())
        self.token_panel.token_changed.connect(lambda _info: self._refresh())
        self.prompts_panel.table_changed.connect(self._on_table_changed)
        self.prompts_panel.lengths_changed.connect(self._refresh)
        self.settings_panel.changed.connect(self._refresh)
        self.settings_panel.changed.connect(
            lambda: self.model_panel.set_memory_inputs(self.settings_panel.memory_inputs()))
        self.unfinished_bar.reopen.connect(self.reopen_job)
        self.run_page.run_button.clicked.connect(self.start_run)
        self.run_page.cancel_button.clicked.connect(self.cancel_run)
        self.run_page.export_button.clicked.connect(lambda: self.go_to(STEP_EXPORT))
        self.export_page.export_button.clicked.connect(self.choose_export_folder)
        self.export_page.open_button.clicked.connect(self.open_export_folder)
        self.export_page.inspect_button.clicked.connect(self.choose_folder_to_inspect)
        self.export_finished.connect(lambda folder: self.estimate_step.use_export(
            folder, getattr(self.prompts_panel.table, "path", None)))

    # --- preferences -----------------------------------------------------------------------------

    def _restore(self) -> None:
        run, export = prefs.load_settings(self.qsettings)
        self.settings_panel.set_values(run, export)
        self.model_panel.set_memory_inputs(self.settings_panel.memory_inputs())
        self.model_panel.set_model(run.model)
        self.model_panel.set_start_folder(prefs.last_folder(self.qsettings, "model"))
        self.prompts_panel.set_start_folder(prefs.last_folder(self.qsettings, "prompts"))
        geometry = self.qsettings.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.setGeometry(centred(PREFERRED_SIZE, self._available_geometry()))
        self.fit_to_screen()

    def _available_geometry(self) -> QRect:
        screen = self.screen() or QGuiApplication.primaryScreen()
        return screen.availableGeometry()

    def fit_to_screen(self, available: QRect | None = None) -> None:
        """Shrink and move the window into `available` (default: its screen's area without taskbars).

        A geometry saved on a bigger screen, or at another scale, would otherwise open partly off-screen.
        """
        if self.isMaximized() or self.isFullScreen():
            return
        available = available if available is not None else self._available_geometry()
        frame = FRAME_ALLOWANCE
        if self.isVisible() and self.frameGeometry() != self.geometry():  # the real frame, once it is known
            outer, inner = self.frameGeometry(), self.geometry()
            frame = QMargins(inner.left() - outer.left(), inner.top() - outer.top(),
                             outer.right() - inner.right(), outer.bottom() - inner.bottom())
        self.setGeometry(fitted_geometry(self.geometry(), available, frame))

    def save_preferences(self) -> None:
        try:
            run, export = self.settings_panel.values(model=self.model_panel.model() or DEFAULT_MODEL)
        except GpiError:
            return  # a half-typed option line is not worth keeping
        prefs.save_settings(self.qsettings, run, export)
        self.qsettings.setValue("window/geometry", self.saveGeometry())
        self.qsettings.sync()

    # --- the state of the steps ------------------------------------------------------------------

    def _on_table_changed(self, table) -> None:
        if table is not None:
            prefs.remember_folder(self.qsettings, "prompts", Path(table.path).parent)
            self.run_page.reset_progress(len(table))
        self._refresh()
        if table is not None and self.current_outcome() is not None:  # the file of the results, opened again
            self.run_page.reset_progress(len(table), len(table))
        if table is not None and self._reopening is not None:
            self._show_reopened_job(table)

    # --- unfinished jobs -------------------------------------------------------------------------

    def _look_for_unfinished_jobs(self) -> None:
        from gpi_desktop.core.job.job import unfinished_jobs

        folders = (self.runs_dir, *self.old_runs_dirs)  # jobs an older version kept where they could not be moved
        self.calls.call(lambda: sorted((job for folder in folders for job in unfinished_jobs(folder)),
                                       key=lambda job: -job.modified),
                        self.unfinished_bar.set_jobs,
                        lambda error: log.warning("unfinished jobs not listed: %s", error))

    def reopen_job(self, job) -> None:
        """Set the model, settings and prompts file of an unfinished job; its finished rows then show in step 5."""
        from gpi_desktop.core.job.job import FILE_MOVED

        if self.runner.is_busy():
            return
        self.unfinished_bar.hide()
        self.settings_panel.set_values(job.spec.settings, job.spec.export)
        self.model_panel.set_model(job.spec.settings.model)
        if job.prompts_file == FILE_MOVED:
            self._reopening = None
            self.go_to(STEP_PROMPTS)
            self.run_page.show_status(f"The prompts file of this job is no longer at {job.spec.prompts_path}: open it "
                                      "from where it is now (step 3). The model and settings are set as they were.",
                                      error=True)
            return
        self._reopening = job
        self.prompts_panel.load_file(job.spec.prompts_path, job.spec.column, sheet=job.spec.sheet)

    def _show_reopened_job(self, table) -> None:
        job, self._reopening = self._reopening, None
        try:
            spec = self.current_spec()
        except GpiError as error:
            self.run_page.show_status(window_sentence(error), error=True)
            return
        runs_dir, elsewhere = self.runs_dir, self.old_runs_dirs
        self.calls.call(lambda: _inspect_job(spec, table, runs_dir, elsewhere),
                        lambda pending: self._on_reopened(job, pending),
                        self._on_inspect_failed)

    def _on_reopened(self, job, pending: PendingRun) -> None:
        self.go_to(STEP_RUN)
        name = Path(job.spec.prompts_path).name
        if pending.work_dir.name != job.work_dir.name or pending.finished is None:  # the name is the job hash
            self.run_page.show_status(f"{name} has changed since this job started, so its finished rows are not "
                                      "this file's rows: change the file back to continue the job, or press Run to "
                                      "start a new one with these settings.", error=True)
            return
        texts = pending.table.texts
        self.run_page.results.reset(lambda row: texts[row], len(pending.table), pending.finished_results)
        self._shown, self._shown_changes, self._run_work_dir = pending, (), pending.work_dir
        self._stopped_here.add(pending.work_dir)  # the user chose it: Run continues it without asking again
        self.run_page.reset_progress(len(pending.table), pending.finished)
        self._refresh()
        self.run_page.show_status(f"Reopened the job on {name}: {pending.finished:,} of {len(pending.table):,} rows "
                                  "are done. Press Run to continue where it stopped.")

    def run_blocker(self) -> str | None:
        """Why Run cannot start yet, in plain words, or None."""
        table = self.prompts_panel.table
        if self._starting:
            return "The run is starting."
        if self.prompts_panel.is_loading():
            return "The prompts file is still being read."
        if table is None:
            return "Open a prompts file first (step 3)." if self.prompts_panel.model.rowCount() == 0 else (
                "Choose the column with the texts (step 3).")
        if self.prompts_panel.empty:
            return "Some rows have no text (step 3 shows them in red): fill them or delete them, then open the file again."
        too_long = self.prompts_panel.too_long_message()
        if too_long:
            return too_long
        if not self.model_panel.model():
            return "Enter a model first (step 2)."
        try:
            self.current_spec()
        except GpiError as error:
            return window_sentence(error)
        return None

    def current_spec(self):
        """The job the inputs describe now (`core.job.job.JobSpec`); raises GpiError in plain words for a bad input."""
        from gpi_desktop.core.job.job import JobSpec

        table = self.prompts_panel.table
        run, export = self.settings_panel.values(model=self.model_panel.model())
        return JobSpec(prompts_path=Path(table.path), column=table.column, settings=run, export=export,
                       sheet=table.sheet).validate()

    def result_changes(self) -> tuple | None:
        """What differs between the job of the results in the preview and the inputs now (`KeyChange`s).

        None: no results are shown; (): they are the current inputs' own. An input that cannot make a job
        (a half-typed option, no file) counts as a change, named by its own sentence.
        """
        if self._shown is None:
            return None
        from gpi_desktop.core.job.job import job_key
        from gpi_desktop.core.files.runstore import KeyChange, key_changes

        table = self.prompts_panel.table
        if table is None or self.prompts_panel.is_loading():
            return (KeyChange("the prompts file (none is open now)"),)
        try:
            now = job_key(self.current_spec(), table)
        except GpiError as error:
            return (KeyChange(window_sentence(error).rstrip(".")),)
        return key_changes(self._shown.key, now)

    def current_outcome(self):
        """The finished run, when the current inputs are the ones that made it; else None (nothing to export)."""
        if self.outcome is None or self.result_changes() != ():
            return None
        return self.outcome

    def _refresh(self, *_args) -> None:
        table = self.prompts_panel.table
        try:
            run, export = self.settings_panel.values(model=self.model_panel.model())
            self.export_page.set_export_settings(export)
        except GpiError:
            run = None
        self.prompts_panel.set_run_settings(run if self.model_panel.model() else None)
        changes = self._show_freshness()
        fresh = self.outcome is not None and changes == ()
        done = [
            bool(self.token_panel.info),  # a token is found (many models need none: the step is optional)
            self._model_checked(),
            table is not None and not self.prompts_panel.empty and not self.prompts_panel.too_long_message(),
            True,
            fresh,
            fresh and self.last_export is not None,
        ]
        for i, ok in enumerate(done):
            mark = "  \u2714" if ok and i != STEP_SETTINGS else ""
            self.steps.item(i).setText(f"{i + 1}  {STEP_TITLES[i]}{mark}")
        self.run_page.set_repeat_task(self.settings_panel.task_box.currentData() == "repeat")
        self.run_page.summary_label.setText(self._summary(table, run))
        if not self.runner.is_busy():
            self.run_page.set_blocker(self.run_blocker())

    def _show_freshness(self) -> tuple | None:
        """Say on steps 5 and 6 whether the results shown belong to the current inputs; returns the changes."""
        if self.runner.is_busy() or self._starting:
            return self._shown_changes  # the inputs are locked while a run or an export works
        changes = self.result_changes()
        if changes == self._shown_changes:
            return changes
        self._shown_changes = changes
        if changes:
            shown = self._shown
            made_with = (made_with_html(self.outcome) if self.outcome is not None
                         else job_html(shown.spec, shown.table, len(shown.table)))
            text = stale_html(made_with, changes)
            self.run_page.set_stale(text)
            if self.outcome is not None:
                self.export_page.set_stale(text)
        else:
            self.run_page.set_stale(None)
            self.run_page.export_button.setEnabled(self.outcome is not None)
            self._export_ready_again()
        return changes

    def _model_checked(self) -> bool:
        """Step 2 is done when the model's config was read: its vector length is known."""
        target = self.model_panel.last_target
        return target is not None and bool(target.hidden_size)

    def _summary(self, table, run) -> str:
        model = self.model_panel.model()
        lines = []
        if is_demo_model(model):
            lines.append("<b>Model:</b> the demo model (random weights: its texts are gibberish)")
        else:
            lines.append(f"<b>Model:</b> {_html(model) or '(none)'}")
        target = self.model_panel.last_target
        if target is not None:
            where = "the CPU (slow for large models)" if target.on_cpu else _html(target.where)
            width = (f"{target.hidden_size:,} numbers per vector" if target.hidden_size
                     else "numbers per vector not known yet")
            lines.append(f"<b>Runs on:</b> {where}, {width}")
        elif model:
            why = "the model is being checked" if self.model_panel.is_checking() else "see step 2"
            lines.append(f"<b>Runs on:</b> not known yet ({why}), numbers per vector not known yet")
        if table is not None:
            lines.append(f"<b>Prompts:</b> {len(table):,} rows from {_html(Path(table.path).name)}, "
                         f"column '{_html(table.column)}'")
        else:
            lines.append("<b>Prompts:</b> none yet")
        if run is not None:
            lines.append(f"<b>Settings:</b> {_html(settings_words(run))}")
        return "<br>".join(lines)

    # --- run -------------------------------------------------------------------------------------

    def start_run(self) -> None:
        """Check the job, ask about an unfinished run of it, then start it in the worker."""
        if self.runner.is_busy():
            return
        blocker = self.run_blocker()
        if blocker:
            self.run_page.show_status(blocker, error=True)
            return
        try:
            table = self.prompts_panel.table
            spec = self.current_spec()
        except GpiError as error:
            self.run_page.show_status(window_sentence(error), error=True)
            return
        self.save_preferences()
        self._starting = True
        self.run_page.run_button.setEnabled(False)
        self.run_page.show_status("Checking for an unfinished run of this job\u2026")
        runs_dir, elsewhere = self.runs_dir, self.old_runs_dirs
        self.calls.call(lambda: _inspect_job(spec, table, runs_dir, elsewhere), self._on_inspected,
                        self._on_inspect_failed)

    def _on_inspect_failed(self, error: BaseException) -> None:
        self._starting = False
        self._refresh()
        message = failure_sentence(error, "This job's earlier run could not be checked")
        self.run_page.show_status(message, error=True)
        self.run_failed.emit(message)

    def _on_inspected(self, pending: PendingRun) -> None:
        self._starting = False
        start_over = False
        total = len(pending.table)
        in_view = self.current_outcome() is not None  # this job's finished results are on screen
        if in_view or pending.finished == total:
            choice = self.prompter.ask(
                self, "This job is already finished",
                f"All {total:,} prompts of this job are done with these settings.",
                ["Use these results", "Start again", "Cancel"],
                details="Start again throws the finished texts and vectors away and makes them anew.")
            if choice == 1:
                self._launch(pending, True)
                return
            if choice == 0 and not in_view:
                self._launch(pending, False)  # reads the finished job back from its journal; generates nothing
                return
            self._refresh()
            self.run_page.show_status("Nothing was started." if choice == 2 else
                                      "These results are kept: check them below, then export (step 6).")
            self.run_failed.emit("not started")
            return
        if pending.finished is not None and pending.work_dir not in self._stopped_here:
            choice = self.prompter.ask(
                self, "Continue the earlier run?",
                f"This same job was started before and {pending.finished:,} of {total:,} prompts are done.",
                ["Continue where it stopped", "Start again from the beginning", "Cancel"],
                details="Continuing redoes no finished prompt and gives the same files as one uninterrupted run.")
            if choice == 2:
                self._refresh()
                self.run_page.show_status("Nothing was started.")
                self.run_failed.emit("not started")
                return
            start_over = choice == 1
        self._launch(pending, start_over)

    def _launch(self, pending: PendingRun, start_over: bool, *, ignore_memory_check: bool = False) -> None:
        if self.runner.is_busy():
            return
        self._launched = pending
        spec, work_dir = pending.spec, pending.work_dir
        table = pending.table
        self.outcome = None
        self.last_export = None
        self.export_page.set_ready(False)
        self._shown, self._shown_changes = pending, ()
        self.run_page.set_stale(None)
        texts = table.texts
        self.run_page.results.reset(lambda row: texts[row], len(table), () if start_over else pending.finished_results)
        self._prompts_done = 0 if start_over else pending.finished or 0
        self.run_page.reset_progress(len(table), self._prompts_done)

        def task(state):
            from gpi_desktop.core.files.runstore import RunJournal
            from gpi_desktop.core.job.job import run_job

            if start_over:
                RunJournal.discard(work_dir)
            state.set_status("Loading the model\u2026 (a hub model is downloaded the first time)")
            return run_job(spec, work_dir, state, resume=True, token=_current_token(),
                           ignore_memory_check=ignore_memory_check)

        run = (Operation(self.runner, task)
               .on_status(self.run_page.show_status)
               .on_progress(self._on_run_progress)
               .on_partial_result(self.run_page.results.add_result)
               .on_end(self._on_run_ended)
               .success(self._on_run_succeeded)
               .failure(self._on_run_failed)
               .on_cancelled(self._on_run_cancelled))
        self._run_work_dir = work_dir
        if not run.start():
            return
        self._run = run
        self.run_page.set_running(True)
        self._lock_inputs(True)
        self.go_to(STEP_RUN)

    def _run_is_running(self) -> bool:
        return self._run is not None and self._run.running

    def cancel_run(self) -> None:
        if self._run_is_running():
            self._run.cancel()
            self.run_page.set_cancelling()

    def _lock_inputs(self, locked: bool) -> None:
        """The inputs stay as they are while a run or an export works: its results are theirs."""
        if not locked:
            self.run_page.set_running(False)
        self.settings_panel.setEnabled(not locked)
        self.model_panel.setEnabled(not locked)
        self.prompts_panel.setEnabled(not locked)

    def _on_run_progress(self, progress: Progress) -> None:
        if progress.kind is ProgressKind.PROMPTS:  # not a download's bytes
            self._prompts_done = progress.done
        self.run_page.show_progress(progress)

    def _on_run_ended(self) -> None:
        self._lock_inputs(False)
        self.model_panel.refresh_cached()  # a run downloads a hub model the first time: list it under step 2
        self._refresh()

    def _on_run_failed(self, error: BaseException) -> None:
        if isinstance(error, MemoryFitError) and self._launched is not None and not self._close_when_idle:
            if self._insist_on_memory(error):
                self._launch(self._launched, False, ignore_memory_check=True)
                return
            message = error.verdict
        else:
            message = failure_sentence(error, "The run stopped")
        if self._run_work_dir is not None:
            if getattr(error, "remedy", None) is Remedy.START_OVER:
                # Its journal cannot be continued: the next Run asks again, so that "Start again" can be chosen.
                self._stopped_here.discard(self._run_work_dir)
            else:
                self._stopped_here.add(self._run_work_dir)
        self.run_page.show_stopped_progress()
        self.run_page.show_status(message + " Press Run to try again; finished texts are kept.", error=True)
        self.run_failed.emit(message)
        self._after_task()

    def _insist_on_memory(self, error: MemoryFitError) -> bool:
        """Ask whether to run although the estimate says it will not fit (No is the safe answer)."""
        choice = self.prompter.ask(
            self, "The run may not fit in memory", error.verdict, ["Change the settings", "Run anyway"],
            details="The estimate is approximate. A run that does not fit stops with an out-of-memory error, or "
                    "becomes very slow as the computer swaps.", warning=True, default=0)
        return choice == 1

    def _on_run_cancelled(self) -> None:
        if self._run_work_dir is not None:
            self._stopped_here.add(self._run_work_dir)
        done = max(self._prompts_done, self.run_page.results.finished_count())
        self.run_page.show_stopped_progress()
        self.run_page.show_status(f"Stopped. {done:,} finished texts are kept; press Run to continue where it stopped.")
        self.run_failed.emit("stopped")
        self._after_task()

    def _on_run_succeeded(self, outcome) -> None:
        self.outcome = outcome
        if self._run_work_dir is not None:
            self._stopped_here.discard(self._run_work_dir)
        texts = outcome.table.texts
        self.run_page.results.set_results(outcome.results, lambda row: texts[row])
        self.run_page.show_job_figures(job_figures_line(len(outcome.results), sum(r.n_tokens for r in outcome.results),
                                                        outcome.seconds_spent))
        limit = sum(1 for r in outcome.results if r.hit_limit)
        note = (f" {limit:,} stopped at the token limit (highlighted): raise 'Maximum new tokens' if they look cut off."
                if limit else "")
        self.run_page.show_status(f"Done: {len(outcome.results):,} texts and vectors.{note} "
                                  "Check them below, then export (step 6).")
        self.run_page.export_button.setEnabled(True)
        self._export_ready_again()
        self.run_finished.emit(outcome)
        self._after_task()

    def _export_ready_again(self) -> None:
        outcome = self.outcome
        if outcome is None:
            self.export_page.set_ready(False)
        else:
            self.export_page.set_ready(True, len(outcome.results), made_with=made_with_html(outcome))

    def _after_task(self) -> None:
        self._refresh()
        if self._close_when_idle:
            self.close()

    # --- export ----------------------------------------------------------------------------------

    def choose_export_folder(self) -> None:
        start = prefs.last_folder(self.qsettings, "export", default=documents_folder())
        dialog = ExportFolderDialog(self, Path(start))
        if dialog.exec() and dialog.selectedFiles():
            self.export_to(Path(dialog.selectedFiles()[0]))

    def export_to(self, folder: Path) -> bool:
        """Write the export folder in the worker; asks before writing into a folder that holds files."""
        if self.outcome is None or self.runner.is_busy():
            return False
        if self.current_outcome() is None:  # the inputs changed since the run: its results are not theirs
            self.export_page.show_error(stale_html(made_with_html(self.outcome), self.result_changes() or ()))
            return False
        try:
            # File names may change after the run (they do not change the numbers): use the form's.
            _run, export = self.settings_panel.values(model=self.model_panel.model())
            export.validate()
        except GpiError as error:
            self.export_page.show_error(window_sentence(error))
            return False
        outcome = replace(self.outcome, spec=replace(self.outcome.spec, export=export))
        overwrite = False
        if folder_has_files(folder):
            choice = self.prompter.ask(self, "The folder is not empty", overwrite_question(folder, outcome.spec.export),
                                       ["Write into it", "Cancel"], warning=True, default=1)
            if choice != 0:
                return False
            overwrite = True
        prefs.remember_folder(self.qsettings, "export", folder.parent if folder.parent.is_dir() else folder)
        self.export_page.set_exporting(True)
        journal = self._run_work_dir

        def task(state):
            from gpi_desktop.core.files.folderhold import hold_folder
            from gpi_desktop.core.files.runstore import RunJournal
            from gpi_desktop.core.job.job import export_run

            with hold_folder(folder):  # a command-line run writing into it meanwhile is refused, not overwritten
                summary = export_run(outcome, folder, overwrite=overwrite, state=state)
            if journal is not None:
                RunJournal.discard(journal)  # the export holds everything now; the journal would only take disk space
            return summary

        writing = (Operation(self.runner, task)
                   .on_progress(lambda progress: self.export_page.show_progress(progress.done, progress.total))
                   .on_end(self._on_export_ended)
                   .success(self._on_export_succeeded)
                   .failure(self._on_export_failed)
                   .on_cancelled(self._on_export_cancelled))
        self._export_settings = export
        if not writing.start():
            self.export_page.set_exporting(False)
            return False
        self._lock_inputs(True)
        return True

    def _on_export_ended(self) -> None:
        self._lock_inputs(False)
        self._refresh()
        self.export_page.set_exporting(False)

    def _on_export_failed(self, error: BaseException) -> None:
        self._export_ready_again()
        self.export_page.show_error(failure_sentence(error, "The export could not be written"))
        self._after_task()

    def _on_export_cancelled(self) -> None:
        self._export_ready_again()
        self._after_task()

    def _on_export_succeeded(self, summary) -> None:
        folder = Path(summary.folder)
        self.last_export = folder
        outcome = self.outcome
        snippet = gpi_pack_snippet(folder, self._export_settings)
        message = f"Exported {len(outcome.results):,} texts and vectors to {folder}."
        self.export_page.show_done(message, snippet)
        self.export_finished.emit(folder)
        choice = self.prompter.ask(self, "Export finished", message, ["Open the folder", "Close"],
                                   details="Load it in Python with gpi_pack:\n\n" + snippet)
        if choice == 0:
            self.open_export_folder()
        self._after_task()

    def choose_folder_to_inspect(self) -> None:
        start = str(self.last_export) if self.last_export is not None else prefs.last_folder(self.qsettings, "export")
        folder = QFileDialog.getExistingDirectory(self, "Choose an export folder to inspect", start)
        if folder:
            self.inspect_folder(Path(folder))

    def inspect_folder(self, folder: Path) -> None:
        """Say what `folder` was made with and check its files, off the main thread (it reads every file)."""
        from gpi_desktop.core.output.provenance import inspect_export

        self.export_page.set_inspecting(str(folder))
        self.calls.call(lambda: inspect_export(folder),
                        lambda report: self.export_page.show_inspection(report.lines(), report.ok),
                        lambda error: self.export_page.show_inspection_error(
                            failure_sentence(error, "The folder could not be inspected")))

    def open_export_folder(self) -> None:
        if self.last_export is not None:
            self._open_folder(self.last_export)

    # --- drag and drop ---------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if _dropped_table(event.mimeData()) is not None and not self.runner.is_busy():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = _dropped_table(event.mimeData())
        if path is not None and not self.runner.is_busy():
            event.acceptProposedAction()
            self.go_to(STEP_PROMPTS)
            self.prompts_panel.load_file(path)

    # --- closing ---------------------------------------------------------------------------------

    def stop_and_close(self) -> None:
        """"Stop and close" without asking: what SIGTERM (a logout, `kill`) means, as on the command line."""
        if self.runner.is_busy() and not self._close_when_idle:
            self._stop_then_close()
        self.close()

    def _stop_then_close(self) -> None:
        self._close_when_idle = True
        self.runner.cancel()  # a run stops within a step; an export stops and removes what it wrote
        if self._run_is_running():
            self.run_page.set_cancelling()
        self.run_page.show_status("Stopping\u2026 the window closes when the current step has ended.")

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.runner.is_busy():
            if not self._close_when_idle:
                what = "A run" if self._run_is_running() else "An estimate" if self.estimate_step.busy else "An export"
                choice = self.prompter.ask(
                    self, "Stop and close?",
                    f"{what} is in progress. Stop it and close the window?",
                    ["Stop and close", "Keep working"], default=1,
                    details="Finished texts are kept: next time, press Run and choose to continue.")
                if choice != 0:
                    event.ignore()
                    return
                self._stop_then_close()
            event.ignore()  # closes for real when the worker reports back (see _after_task)
            return
        self.save_preferences()
        self.model_panel.stop()
        self.prompts_panel.stop()
        self.runner.shutdown()
        self.calls.wait(CLOSE_WAIT_S)
        event.accept()


def _current_token() -> str | None:
    """The token from the keyring / session / environment; called only on worker threads."""
    from gpi_desktop.core.hub.secrets import find_token

    return find_token().token


def _dropped_table(mime) -> Path | None:
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.suffix.lower() in DROP_SUFFIXES:
                return path
    return None


def _html(text: str) -> str:
    return html.escape(str(text), quote=False)

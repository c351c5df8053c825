"""The main window: seven steps in the order a researcher works, and the one run at a time.

The window holds no engine logic. It reads its steps into a `StepInputs`, keeps what
happened in a `WindowState` and renders what the pure functions of `ui/state/` say of them
(what blocks Run, which steps are done, whether the results shown are stale). It runs
its job's `core.session.job_session.JobSession` as an `Operation` on the `TaskRunner` (one worker on a QThread)
and shows what comes back; the export step lives in `export_actions`, reopening an
unfinished job in `reopen_actions`, Help and the window's place in `window_frame`. Each job keeps its journal in the app data folder
under runs/<job hash>, so a run stopped for any reason continues later.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSettings, Signal
from PySide6.QtGui import (
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QIcon,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QMainWindow,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from gpi_desktop.core.files.legacy_runs import adopt_job_folders
from gpi_desktop.core.files.prompts import PromptTable
from gpi_desktop.core.job.job import RUNS_DIRNAME, JobSpec, MemoryCheck, RunOutcome
from gpi_desktop.core.job.journals import ResumePolicy
from gpi_desktop.core.vocabulary.errors import GpiError, InputError, MemoryFitError, Remedy
from gpi_desktop.core.vocabulary.progress import Progress, ProgressKind
from gpi_desktop.ui.export_actions import ExportActions
from gpi_desktop.ui.reopen_actions import ReopenActions
from gpi_desktop.ui.shared import none_guard, prefs
from gpi_desktop.ui.shared.error_words import failure_sentence, window_sentence
from gpi_desktop.ui.shared.formatting import job_figures_line, settings_words
from gpi_desktop.ui.shared.prompter import Prompter
from gpi_desktop.ui.shared.resources import (
    APPLICATION,
    app_data_dir,
    icon_path,
    is_demo_model,
    legacy_data_dirs,
)
from gpi_desktop.ui.shared.screen_fit import PREFERRED_SIZE, centred
from gpi_desktop.ui.shared.tasks import BackgroundCalls, Operation, TaskRunner
from gpi_desktop.ui.state import window_state
from gpi_desktop.ui.state.window_state import (
    STEP_ACCESS,
    STEP_ESTIMATE,
    STEP_EXPORT,
    STEP_MODEL,
    STEP_PROMPTS,
    STEP_RUN,
    STEP_SETTINGS,
    STEP_TITLES,
    PendingRun,
    StepInputs,
    WindowState,
    inspect_job,
)
from gpi_desktop.ui.steps.estimate_step import EstimateStep
from gpi_desktop.ui.steps.export_flow import (
    job_html,
    made_with_html,
    stale_html,
)
from gpi_desktop.ui.steps.export_step import ExportPage
from gpi_desktop.ui.steps.model_step import ModelPanel
from gpi_desktop.ui.steps.prompts_step import PromptsPanel, dropped_table
from gpi_desktop.ui.steps.run_step import RunPage
from gpi_desktop.ui.steps.settings_step import SettingsPanel
from gpi_desktop.ui.steps.token_step import TokenPanel
from gpi_desktop.ui.stop_actions import StopActions
from gpi_desktop.ui.unfinished_bar import UnfinishedBar
from gpi_desktop.ui.window_frame import (
    FrameActions,
    install_help_menu,
    mark_done,
    step_list,
    step_page,
)

# The step numbers live with the window's state; imported from here too, as the window's own.
__all__ = [
    "STEP_ACCESS",
    "STEP_ESTIMATE",
    "STEP_EXPORT",
    "STEP_MODEL",
    "STEP_PROMPTS",
    "STEP_RUN",
    "STEP_SETTINGS",
    "STEP_TITLES",
    "MainWindow",
]

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 5.0  # for a model check or keyring call still out when the window closes


class MainWindow(FrameActions, ReopenActions, ExportActions, StopActions, QMainWindow):
    run_finished = Signal(object)  # RunOutcome
    run_failed = Signal(str)  # why a run did not finish (refused, failed or stopped), in plain words
    export_finished = Signal(object)  # the export folder (Path)

    def __init__(
        self,
        settings: QSettings | None = None,
        *,
        data_dir: Path | None = None,
        prompter: Prompter | None = None,
        legacy_dirs: list[Path] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.qsettings = settings if settings is not None else QSettings()
        self.runs_dir = (data_dir if data_dir is not None else app_data_dir()) / RUNS_DIRNAME
        # Jobs an older version kept elsewhere: moved here (a rename), or looked up where they are.
        if legacy_dirs is None:
            legacy_dirs = legacy_data_dirs() if data_dir is None else []
        self.old_runs_dirs = tuple(
            old / RUNS_DIRNAME for old in legacy_dirs if adopt_job_folders(old / RUNS_DIRNAME, self.runs_dir)
        )
        self.prompter = prompter or Prompter()
        self.state = WindowState()
        self._run: Operation | None = None  # the run last started (running while the worker generates)

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
        from gpi_desktop.ui.cluster.dialogs import install_cluster_menu, main_window_job

        self.steps = step_list()
        self.pages = QStackedWidget()
        for i, body in enumerate(
            (
                self.token_panel,
                self.model_panel,
                self.prompts_panel,
                self.settings_panel,
                self.run_page,
                self.export_page,
                self.estimate_step,
            )
        ):
            self.pages.addWidget(step_page(i, body, self.go_to))
        self.steps.currentRowChanged.connect(self.pages.setCurrentIndex)
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
        install_cluster_menu(self, lambda: main_window_job(self))
        install_help_menu(self, self.show_guide, self.open_log_folder, self.show_about)

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
            lambda: self.model_panel.set_memory_inputs(self.settings_panel.memory_inputs())
        )
        self.unfinished_bar.reopen.connect(self.reopen_job)
        self.run_page.template_note.linkActivated.connect(self.choose_template)
        self.run_page.run_button.clicked.connect(self.start_run)
        self.run_page.cancel_button.clicked.connect(self.cancel_run)
        self.run_page.export_button.clicked.connect(lambda: self.go_to(STEP_EXPORT))
        self.export_page.export_button.clicked.connect(self.choose_export_folder)
        self.export_page.open_button.clicked.connect(self.open_export_folder)
        self.export_page.inspect_button.clicked.connect(self.choose_folder_to_inspect)
        self.export_finished.connect(
            lambda folder: self.estimate_step.use_export(folder, getattr(self.prompts_panel.table, "path", None))
        )

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

    # --- the state of the steps ------------------------------------------------------------------

    def _on_table_changed(self, table) -> None:
        if table is not None:
            prefs.remember_folder(self.qsettings, "prompts", Path(table.path).parent)
            self.run_page.reset_progress(len(table))
        self._refresh()
        if table is not None and self.current_outcome() is not None:  # the file of the results, opened again
            self.run_page.reset_progress(len(table), len(table))
        if table is not None and self.state.reopening is not None:
            self._show_reopened_job(table)

    @property
    def outcome(self) -> RunOutcome | None:
        """The last finished run."""
        return self.state.outcome

    @property
    def last_export(self) -> Path | None:
        return self.state.last_export

    @last_export.setter
    def last_export(self, folder: Path | None) -> None:
        self.state.last_export = folder

    def inputs(self) -> StepInputs:
        """What the steps hold now, for the window's state to judge."""
        table = self.prompts_panel.table
        run = job = problem = None
        try:
            run, _export = self.settings_panel.values(model=self.model_panel.model())
            job = self.current_spec() if table is not None else None
        except GpiError as error:
            problem = window_sentence(error)
        return StepInputs(
            token_found=bool(self.token_panel.info),
            model=self.model_panel.model(),
            target=self.model_panel.last_target,
            model_checking=self.model_panel.is_checking(),
            prompts_loading=self.prompts_panel.is_loading(),
            rows_shown=self.prompts_panel.model.rowCount(),
            table=table,
            empty_rows=len(self.prompts_panel.empty),
            too_long=self.prompts_panel.too_long_message(),
            run=run,
            job=job,
            job_problem=problem,
        )

    def run_blocker(self) -> str | None:
        """Why Run cannot start yet, in plain words, or None."""
        return window_state.run_blocker(self.inputs(), self.state.starting)

    def _open_table(self) -> PromptTable:
        """The prompts of step 3; InputError while no file is open (Run is off then: see run_blocker)."""
        table = self.prompts_panel.table
        if table is None:
            raise InputError("Open a prompts file first (step 3).")
        return table

    def current_spec(self) -> JobSpec:
        """The job the inputs describe now; raises GpiError in plain words for a bad input."""
        table = self._open_table()
        run, export = self.settings_panel.values(model=self.model_panel.model())
        return JobSpec(
            prompts_path=Path(table.path), column=table.column, settings=run, export=export, sheet=table.sheet
        ).validate()

    def result_changes(self) -> tuple | None:
        """What differs between the job of the results in the preview and the inputs now (see window_state)."""
        return window_state.result_changes(self.inputs(), self.state.shown)

    def current_outcome(self) -> RunOutcome | None:
        """The finished run, when the current inputs are the ones that made it; else None (nothing to export)."""
        return window_state.current_outcome(self.state, self.result_changes())

    def _refresh(self, *_args) -> None:
        try:
            run, export = self.settings_panel.values(model=self.model_panel.model())
            self.export_page.set_export_settings(export)
        except GpiError:
            run = None
        self.prompts_panel.set_run_settings(run if self.model_panel.model() else None)
        inputs = self.inputs()
        changes = self._show_freshness(inputs)
        mark_done(self.steps, window_state.steps_done(inputs, self.state, changes))
        self.run_page.set_repeat_task(self.settings_panel.task_box.currentData() == "repeat")
        self.run_page.set_template(self.settings_panel.template_box.currentData())
        words = settings_words(inputs.run) if inputs.run is not None else ""
        self.run_page.summary_label.setText(window_state.summary_html(inputs, is_demo_model(inputs.model), words))
        if not self.runner.is_busy():
            self.run_page.set_blocker(window_state.run_blocker(inputs, self.state.starting))

    def _show_freshness(self, inputs: StepInputs) -> tuple | None:
        """Say on steps 5 and 6 whether the results shown belong to the current inputs; returns the changes."""
        if self.runner.is_busy() or self.state.starting:
            return self.state.shown_changes  # the inputs are locked while a run or an export works
        changes = window_state.result_changes(inputs, self.state.shown)
        if changes == self.state.shown_changes:
            return changes
        self.state.shown_changes = changes
        shown = self.state.shown
        if changes and shown is not None:  # changes are only ever found against results on show
            made_with = (
                made_with_html(self.outcome)
                if self.outcome is not None
                else job_html(shown.spec, shown.table, len(shown.table))
            )
            text = stale_html(made_with, changes)
            self.run_page.set_stale(text)
            if self.outcome is not None:
                self.export_page.set_stale(text)
        else:
            self.run_page.set_stale(None)
            self.run_page.export_button.setEnabled(self.outcome is not None)
            self._export_ready_again()
        return changes

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
            table = self._open_table()
            spec = self.current_spec()
        except GpiError as error:
            self.run_page.show_status(window_sentence(error), error=True)
            return
        self.save_preferences()
        self.state.starting = True
        self.run_page.run_button.setEnabled(False)
        self.run_page.show_status("Checking for an unfinished run of this job\u2026")
        runs_dir, elsewhere = self.runs_dir, self.old_runs_dirs
        self.calls.call(
            lambda: inspect_job(spec, table, runs_dir, elsewhere), self._on_inspected, self._on_inspect_failed
        )

    def _on_inspect_failed(self, error: BaseException) -> None:
        self.state.starting = False
        self._refresh()
        message = failure_sentence(error, "This job's earlier run could not be checked")
        self.run_page.show_status(message, error=True)
        self.run_failed.emit(message)

    def _on_inspected(self, pending: PendingRun) -> None:
        self.state.starting = False
        start_over = False
        total = len(pending.table)
        in_view = self.current_outcome() is not None  # this job's finished results are on screen
        if in_view or pending.finished == total:
            choice = self.prompter.ask(
                self,
                "This job is already finished",
                f"All {total:,} prompts of this job are done with these settings.",
                ["Use these results", "Start again", "Cancel"],
                details="Start again throws the finished texts and vectors away and makes them anew.",
            )
            if choice == 1:
                self._launch(pending, True)
                return
            if choice == 0 and not in_view:
                self._launch(pending, False)  # reads the finished job back from its journal; generates nothing
                return
            self._refresh()
            self.run_page.show_status(
                "Nothing was started."
                if choice == 2
                else "These results are kept: check them below, then export (step 6)."
            )
            self.run_failed.emit("not started")
            return
        if pending.finished is not None and pending.work_dir not in self.state.stopped_here:
            choice = self.prompter.ask(
                self,
                "Continue the earlier run?",
                f"This same job was started before and {pending.finished:,} of {total:,} prompts are done.",
                ["Continue where it stopped", "Start again from the beginning", "Cancel"],
                details="Continuing redoes no finished prompt and gives the same files as one uninterrupted run.",
            )
            if choice == 2:
                self._refresh()
                self.run_page.show_status("Nothing was started.")
                self.run_failed.emit("not started")
                return
            start_over = choice == 1
        self._launch(pending, start_over)

    def _launch(self, pending: PendingRun, start_over: bool, memory: MemoryCheck = MemoryCheck.REFUSE) -> None:
        if self.runner.is_busy():
            return
        self.state.launched = pending
        work_dir = pending.work_dir
        table = pending.table
        self.state.outcome = None
        self.state.last_export = None
        self.export_page.set_ready(False)
        self.state.shown, self.state.shown_changes = pending, ()
        self.run_page.set_stale(None)
        texts = table.texts
        self.run_page.results.reset(lambda row: texts[row], len(table), () if start_over else pending.finished_results)
        self.state.prompts_done = 0 if start_over else pending.finished or 0
        self.state.last_progress = None
        self.run_page.reset_progress(len(table), self.state.prompts_done)

        # The window's Run continues this job's journal, unless the user chose Start again.
        policy = ResumePolicy.START_OVER if start_over else ResumePolicy.CONTINUE

        def task(state):
            state.set_status("Loading the model\u2026 (a hub model is downloaded the first time)")
            return pending.session.with_run(token=_current_token()).run(state, policy, memory)

        run = (
            Operation(self.runner, task)
            .on_status(self.run_page.show_status)
            .on_progress(self._on_run_progress)
            .on_partial_result(self.run_page.results.add_result)
            .on_end(self._on_run_ended)
            .success(self._on_run_succeeded)
            .failure(self._on_run_failed)
            .on_cancelled(self._on_run_cancelled)
        )
        self.state.run_work_dir = work_dir
        if not run.start():
            return
        self._run = run
        self.run_page.set_running(True)
        self._lock_inputs(True)
        self.go_to(STEP_RUN)

    def _run_is_running(self) -> bool:
        return self._run is not None and self._run.running

    def _lock_inputs(self, locked: bool) -> None:
        """The inputs stay as they are while a run or an export works: its results are theirs."""
        if not locked:
            self.run_page.set_running(False)
        self.settings_panel.set_locked(locked)
        self.model_panel.setEnabled(not locked)
        self.prompts_panel.setEnabled(not locked)

    def _on_run_progress(self, progress: Progress) -> None:
        if progress.kind is ProgressKind.PROMPTS:  # not a download's bytes
            self.state.prompts_done = progress.done
            self.state.last_progress = progress
        self.run_page.show_progress(progress)

    def _on_run_ended(self) -> None:
        self._lock_inputs(False)
        self.model_panel.refresh_cached()  # a run downloads a hub model the first time: list it under step 2
        self._refresh()

    def _on_run_failed(self, error: BaseException) -> None:
        if isinstance(error, MemoryFitError) and self.state.launched is not None and not self.state.close_when_idle:
            if self._insist_on_memory(error):
                self._launch(self.state.launched, False, MemoryCheck.RUN_ANYWAY)
                return
            message = error.verdict
        else:
            message = failure_sentence(error, "The run stopped")
        if self.state.run_work_dir is not None:
            if getattr(error, "remedy", None) is Remedy.START_OVER:
                # Its journal cannot be continued: the next Run asks again, so that "Start again" can be chosen.
                self.state.stopped_here.discard(self.state.run_work_dir)
            else:
                self.state.stopped_here.add(self.state.run_work_dir)
        self.run_page.show_stopped_progress()
        self.run_page.show_status(message + " Press Run to try again; finished texts are kept.", error=True)
        self.run_failed.emit(message)
        self._after_task()

    def _insist_on_memory(self, error: MemoryFitError) -> bool:
        """Ask whether to run although the estimate says it will not fit (No is the safe answer)."""
        choice = self.prompter.ask(
            self,
            "The run may not fit in memory",
            error.verdict,
            ["Change the settings", "Run anyway"],
            details="The estimate is approximate. A run that does not fit stops with an out-of-memory error, or "
            "becomes very slow as the computer swaps.",
            warning=True,
            default=0,
        )
        return choice == 1

    def _on_run_cancelled(self) -> None:
        if self.state.run_work_dir is not None:
            self.state.stopped_here.add(self.state.run_work_dir)
        done = max(self.state.prompts_done, self.run_page.results.finished_count())
        restarted = len(self.run_page.results.writing())
        self.run_page.show_stopped_progress()
        self.run_page.show_status(window_state.stopped_words(done, restarted))
        self.run_failed.emit("stopped")
        self._after_task()

    def _on_run_succeeded(self, outcome: RunOutcome) -> None:
        self.state.outcome = outcome
        if self.state.run_work_dir is not None:
            self.state.stopped_here.discard(self.state.run_work_dir)
        texts = outcome.table.texts
        self.run_page.results.set_results(outcome.results, lambda row: texts[row])
        self.run_page.show_job_figures(
            job_figures_line(len(outcome.results), sum(r.n_tokens for r in outcome.results), outcome.seconds_spent)
        )
        limit = sum(1 for r in outcome.results if r.hit_limit)
        note = (
            f" {limit:,} stopped at the token limit (highlighted): raise 'Maximum new tokens' if they look cut off."
            if limit
            else ""
        )
        self.run_page.show_status(
            f"Done: {len(outcome.results):,} texts and vectors.{note} Check them below, then export (step 6)."
        )
        self.run_page.export_button.setEnabled(True)
        self._export_ready_again()
        self.run_finished.emit(outcome)
        self._after_task()

    def _after_task(self) -> None:
        self._refresh()
        if self.state.close_when_idle:
            self.close()

    # --- drag and drop ---------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_table(event.mimeData()) is not None and not self.runner.is_busy():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = dropped_table(event.mimeData())
        if path is not None and not self.runner.is_busy():
            event.acceptProposedAction()
            self.go_to(STEP_PROMPTS)
            self.prompts_panel.load_file(path)

    # --- closing ---------------------------------------------------------------------------------

    def stop_and_close(self) -> None:
        """ "Stop and close" without asking: what SIGTERM (a logout, `kill`) means, as on the command line."""
        if self.runner.is_busy() and not self.state.close_when_idle:
            self._stop_then_close()
        self.close()

    def _stop_then_close(self) -> None:
        self.state.close_when_idle = True
        self.runner.cancel()  # a run stops within a step; an export stops and removes what it wrote
        if self._run_is_running():
            self.run_page.set_cancelling()
        self.run_page.show_status("Stopping\u2026 the window closes when the current step has ended.")

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.runner.is_busy():
            if not self.state.close_when_idle:
                what = "A run" if self._run_is_running() else "An estimate" if self.estimate_step.busy else "An export"
                choice = self.prompter.ask(
                    self,
                    "Stop and close?",
                    " ".join(
                        filter(
                            None,
                            [
                                f"{what} is in progress. Stop it and close the window?",
                                self._lost_on_stop() if self._run_is_running() else "",
                            ],
                        )
                    ),
                    ["Stop and close", "Keep working"],
                    default=1,
                    details="Finished texts are kept: next time, press Run and choose to continue.",
                )
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

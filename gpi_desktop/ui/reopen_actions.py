"""Kept jobs in the main window: offered at start, reopened with their model, settings and finished rows.

A part of `MainWindow` (a mixin: `self` is the window), kept apart so that each file holds one concern.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from gpi_desktop.core.files.prompts import PromptTable
from gpi_desktop.core.job.job import FILE_MOVED, KeptJob, kept_jobs
from gpi_desktop.core.vocabulary.errors import GpiError
from gpi_desktop.ui.shared.error_words import window_sentence
from gpi_desktop.ui.state.window_state import STEP_PROMPTS, STEP_RUN, PendingRun, inspect_job

if TYPE_CHECKING:
    from gpi_desktop.core.job.job import JobSpec
    from gpi_desktop.ui.shared.tasks import BackgroundCalls, TaskRunner
    from gpi_desktop.ui.state.window_state import WindowState
    from gpi_desktop.ui.steps.model_step import ModelPanel
    from gpi_desktop.ui.steps.prompts_step import PromptsPanel
    from gpi_desktop.ui.steps.run_step import RunPage
    from gpi_desktop.ui.steps.settings_step import SettingsPanel
    from gpi_desktop.ui.unfinished_bar import UnfinishedBar

log = logging.getLogger(__name__)


if TYPE_CHECKING:
    from PySide6.QtWidgets import QMainWindow as _Window  # what `self` is: the main window
else:
    _Window = object


class ReopenActions(_Window):
    """The kept jobs bar's buttons for `MainWindow`: uses its state, steps and background calls."""

    if TYPE_CHECKING:  # what this part uses of the window (MainWindow defines them)
        state: WindowState
        runner: TaskRunner
        calls: BackgroundCalls
        runs_dir: Path
        old_runs_dirs: tuple[Path, ...]
        unfinished_bar: UnfinishedBar
        settings_panel: SettingsPanel
        model_panel: ModelPanel
        prompts_panel: PromptsPanel
        run_page: RunPage

        def current_spec(self) -> JobSpec: ...
        def go_to(self, step: int) -> None: ...
        def _refresh(self, *_args: object) -> None: ...
        def _on_inspect_failed(self, error: BaseException) -> None: ...
        def _launch(self, pending: PendingRun, start_over: bool) -> None: ...

    def _look_for_unfinished_jobs(self) -> None:
        folders = (self.runs_dir, *self.old_runs_dirs)  # jobs an older version kept where they could not be moved
        self.calls.call(
            lambda: kept_jobs(*folders),
            self.unfinished_bar.set_jobs,
            lambda error: log.warning("kept jobs not listed: %s", error),
        )

    def reopen_job(self, job: KeptJob) -> None:
        """Set the model, settings and prompts file of a kept job; its finished rows then show in step 5 (a finished
        job's results are read back from its journal, ready to export)."""
        if self.runner.is_busy():
            return
        self.unfinished_bar.hide()
        self.settings_panel.set_values(job.spec.settings, job.spec.export)
        self.model_panel.set_model(job.spec.settings.model)
        if job.prompts_file == FILE_MOVED:
            self.state.reopening = None
            self.go_to(STEP_PROMPTS)
            self.run_page.show_status(
                f"The prompts file of this job is no longer at {job.spec.prompts_path}: open it "
                "from where it is now (step 3). The model and settings are set as they were.",
                error=True,
            )
            return
        self.state.reopening = job
        self.prompts_panel.load_file(job.spec.prompts_path, job.spec.column, sheet=job.spec.sheet)

    def _show_reopened_job(self, table: PromptTable) -> None:
        job, self.state.reopening = self.state.reopening, None
        if job is None:
            return
        try:
            spec = self.current_spec()
        except GpiError as error:
            self.run_page.show_status(window_sentence(error), error=True)
            return
        runs_dir, elsewhere = self.runs_dir, self.old_runs_dirs
        self.calls.call(
            lambda: inspect_job(spec, table, runs_dir, elsewhere),
            lambda pending: self._on_reopened(job, pending),
            self._on_inspect_failed,
        )

    def _on_reopened(self, job: KeptJob, pending: PendingRun) -> None:
        self.go_to(STEP_RUN)
        name = Path(job.spec.prompts_path).name
        if pending.work_dir.name != job.work_dir.name or pending.finished is None:  # the name is the job hash
            self.run_page.show_status(
                f"{name} has changed since this job started, so its finished rows are not "
                "this file's rows: change the file back to continue the job, or press Run to "
                "start a new one with these settings.",
                error=True,
            )
            return
        if pending.finished == len(pending.table):
            self._launch(pending, False)  # reads the finished job back from its journal; generates nothing
            return
        texts = pending.table.texts
        self.run_page.results.reset(lambda row: texts[row], len(pending.table), pending.finished_results)
        self.state.shown, self.state.shown_changes, self.state.run_work_dir = pending, (), pending.work_dir
        self.state.stopped_here.add(pending.work_dir)  # the user chose it: Run continues it without asking again
        self.run_page.reset_progress(len(pending.table), pending.finished)
        self._refresh()
        self.run_page.show_status(
            f"Reopened the job on {name}: {pending.finished:,} of {len(pending.table):,} rows "
            "are done. Press Run to continue where it stopped."
        )

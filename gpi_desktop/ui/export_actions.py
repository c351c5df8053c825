"""The export step's actions of the main window: choose a folder, write the export in the worker, inspect a folder.

A part of `MainWindow` (a mixin: `self` is the window), kept apart so that each file holds one concern.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog

from gpi_desktop.core.vocabulary.errors import GpiError
from gpi_desktop.ui.shared import prefs
from gpi_desktop.ui.shared.error_words import failure_sentence, window_sentence
from gpi_desktop.ui.shared.tasks import Operation
from gpi_desktop.ui.steps.export_flow import (
    folder_has_files,
    gpi_pack_snippet,
    made_with_html,
    overwrite_question,
    stale_html,
)
from gpi_desktop.ui.steps.export_folder_dialog import ExportFolderDialog, documents_folder

if TYPE_CHECKING:
    from PySide6.QtCore import QSettings, SignalInstance

    from gpi_desktop.core.job.job import RunOutcome
    from gpi_desktop.core.job.key_changes import KeyChange
    from gpi_desktop.ui.shared.prompter import Prompter
    from gpi_desktop.ui.shared.tasks import BackgroundCalls, TaskRunner
    from gpi_desktop.ui.state.window_state import WindowState
    from gpi_desktop.ui.steps.export_step import ExportPage
    from gpi_desktop.ui.steps.model_step import ModelPanel
    from gpi_desktop.ui.steps.settings_step import SettingsPanel


if TYPE_CHECKING:
    from PySide6.QtWidgets import QMainWindow as _Window  # what `self` is: the main window
else:
    _Window = object


class ExportActions(_Window):
    """Step 6 of `MainWindow`: uses its state, export page, runner, prompter and settings."""

    if TYPE_CHECKING:  # what this part uses of the window (MainWindow defines them)
        state: WindowState
        runner: TaskRunner
        calls: BackgroundCalls
        prompter: Prompter
        qsettings: QSettings
        export_page: ExportPage
        settings_panel: SettingsPanel
        model_panel: ModelPanel
        export_finished: SignalInstance

        def current_outcome(self) -> RunOutcome | None: ...
        def result_changes(self) -> tuple[KeyChange, ...] | None: ...
        def _lock_inputs(self, locked: bool) -> None: ...
        def _refresh(self, *_args: object) -> None: ...
        def _after_task(self) -> None: ...
        def _open_folder(self, folder: Path) -> None: ...

    def _export_ready_again(self) -> None:
        outcome = self.state.outcome
        if outcome is None:
            self.export_page.set_ready(False)
        else:
            self.export_page.set_ready(True, len(outcome.results), made_with=made_with_html(outcome))

    def choose_export_folder(self) -> None:
        start = prefs.last_folder(self.qsettings, "export", default=documents_folder())
        dialog = ExportFolderDialog(self, Path(start))
        if dialog.exec() and dialog.selectedFiles():
            self.export_to(Path(dialog.selectedFiles()[0]))

    def export_to(self, folder: Path) -> bool:
        """Write the export folder in the worker; asks before writing into a folder that holds files."""
        if self.state.outcome is None or self.runner.is_busy():
            return False
        if self.current_outcome() is None:  # the inputs changed since the run: its results are not theirs
            self.export_page.show_error(stale_html(made_with_html(self.state.outcome), self.result_changes() or ()))
            return False
        try:
            # File names may change after the run (they do not change the numbers): use the form's.
            _run, export = self.settings_panel.values(model=self.model_panel.model())
            export.validate()
        except GpiError as error:
            self.export_page.show_error(window_sentence(error))
            return False
        outcome = replace(self.state.outcome, spec=replace(self.state.outcome.spec, export=export))
        overwrite = False
        if folder_has_files(folder):
            choice = self.prompter.ask(
                self,
                "The folder is not empty",
                overwrite_question(folder, outcome.spec.export),
                ["Write into it", "Cancel"],
                warning=True,
                default=1,
            )
            if choice != 0:
                return False
            overwrite = True
        prefs.remember_folder(self.qsettings, "export", folder.parent if folder.parent.is_dir() else folder)
        self.export_page.set_exporting(True)
        launched = self.state.launched
        if launched is None:  # pragma: no cover - an outcome comes from a launched run
            raise RuntimeError("an outcome to export without the run that made it")
        session = launched.session  # the job of the outcome: its export deletes its journal

        def task(state):
            # Holds the folder while it writes: a command-line run writing into it meanwhile is refused.
            return session.export(outcome, state, folder=folder, replace=overwrite)

        writing = (
            Operation(self.runner, task)
            .on_progress(lambda progress: self.export_page.show_progress(progress.done, progress.total))
            .on_end(self._on_export_ended)
            .success(self._on_export_succeeded)
            .failure(self._on_export_failed)
            .on_cancelled(self._on_export_cancelled)
        )
        self.state.export_settings = export
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

    def _on_export_succeeded(self, folder: Path) -> None:
        self.state.last_export = folder
        outcome, settings = self.state.outcome, self.state.export_settings
        assert outcome is not None and settings is not None  # set before the export started, kept while it ran
        snippet = gpi_pack_snippet(folder, settings)
        message = f"Exported {len(outcome.results):,} texts and vectors to {folder}."
        self.export_page.show_done(message, snippet)
        self.export_finished.emit(folder)
        choice = self.prompter.ask(
            self,
            "Export finished",
            message,
            ["Open the folder", "Close"],
            details="Load it in Python with gpi_pack:\n\n" + snippet,
            information=True,
        )
        if choice == 0:
            self.open_export_folder()
        self._after_task()

    def choose_folder_to_inspect(self) -> None:
        start = (
            str(self.state.last_export)
            if self.state.last_export is not None
            else prefs.last_folder(self.qsettings, "export")
        )
        folder = QFileDialog.getExistingDirectory(self, "Choose an export folder to inspect", start)
        if folder:
            self.inspect_folder(Path(folder))

    def inspect_folder(self, folder: Path) -> None:
        """Say what `folder` was made with and check its files, off the main thread (it reads every file)."""
        from gpi_desktop.core.output.provenance import inspect_export

        self.export_page.set_inspecting(str(folder))
        self.calls.call(
            lambda: inspect_export(folder),
            lambda report: self.export_page.show_inspection(report.lines(), report.ok),
            lambda error: self.export_page.show_inspection_error(
                failure_sentence(error, "The folder could not be inspected")
            ),
        )

    def open_export_folder(self) -> None:
        if self.state.last_export is not None:
            self._open_folder(self.state.last_export)

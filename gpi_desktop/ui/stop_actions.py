"""Stop, and the chat formatting offered in step 5, for the main window: what Stop throws away is said first.

A part of `MainWindow` (a mixin: `self` is the window), kept apart so that each file holds one concern.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpi_desktop.ui.state.window_state import work_lost_on_stop
from gpi_desktop.ui.steps.settings_step import LOCKED_NOTE

if TYPE_CHECKING:
    from gpi_desktop.ui.shared.prompter import Prompter
    from gpi_desktop.ui.shared.tasks import Operation, TaskRunner
    from gpi_desktop.ui.state.window_state import WindowState
    from gpi_desktop.ui.steps.run_step import RunPage
    from gpi_desktop.ui.steps.settings_step import SettingsPanel


if TYPE_CHECKING:
    from PySide6.QtWidgets import QMainWindow as _Window  # what `self` is: the main window
else:
    _Window = object


class StopActions(_Window):
    """Step 5's Stop and its chat-formatting offer for `MainWindow`: uses its run, state, prompter and steps."""

    if TYPE_CHECKING:  # what this part uses of the window (MainWindow defines them)
        state: WindowState
        runner: TaskRunner
        prompter: Prompter
        run_page: RunPage
        settings_panel: SettingsPanel
        _run: Operation | None

        def _run_is_running(self) -> bool: ...

    def cancel_run(self) -> None:
        """Stop after the current step; first, where texts are being written, say what Stop throws away."""
        if not self._run_is_running() or self._run is None:
            return
        lost = self._lost_on_stop()
        if (
            lost
            and self.prompter.ask(
                self,
                "Stop the run?",
                lost,
                ["Stop", "Keep running"],
                default=1,
                details="Finished texts are kept: press Run later to continue the job.",
            )
            != 0
        ):
            return
        if self._run_is_running():  # it may have ended while the question was open
            self._run.cancel()
            self.run_page.set_cancelling()

    def _lost_on_stop(self) -> str:
        return work_lost_on_stop(self.run_page.results.writing(), self.state.last_progress)

    def choose_template(self, style: str) -> None:
        """The chat formatting chosen from step 5's note (a later Run uses it; the texts shown stay the old job's)."""
        if self.runner.is_busy():
            self.run_page.show_status(LOCKED_NOTE)
            return
        box = self.settings_panel.template_box
        box.setCurrentIndex(box.findData(style))

"""The frame of the main window: the list of steps, one scrolling page per step, the Help menu, its place on the screen."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QMargins, QRect, QSettings, Qt
from PySide6.QtGui import QFont, QGuiApplication
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

import gpi_desktop
from gpi_desktop.core.vocabulary.errors import GpiError
from gpi_desktop.core.vocabulary.settings import DEFAULT_MODEL
from gpi_desktop.ui.shared import prefs
from gpi_desktop.ui.shared.folders import open_in_file_manager
from gpi_desktop.ui.shared.resources import APPLICATION
from gpi_desktop.ui.shared.screen_fit import FRAME_ALLOWANCE, fitted_geometry
from gpi_desktop.ui.state.window_state import STEP_ACCESS, STEP_ESTIMATE, STEP_TITLES

if TYPE_CHECKING:
    from gpi_desktop.ui.shared.prompter import Prompter
    from gpi_desktop.ui.steps.model_step import ModelPanel
    from gpi_desktop.ui.steps.settings_step import SettingsPanel

ABOUT = (
    "Generates a text and one vector of the model's hidden states per prompt, and exports them exactly as "
    "gpi_pack's extract_and_save_hidden_states does, for GenAI-Powered Inference (GPI).\n\n"
    "Problems are written to the log file (Help \u2192 Open the log folder); it never holds your token."
)


def step_list() -> QListWidget:
    """The steps on the left, the first one chosen."""
    steps = QListWidget()
    steps.setFixedWidth(240)
    steps.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    steps.setSpacing(2)
    steps.setStyleSheet("QListWidget { font-size: 14px; } QListWidget::item { padding: 8px 6px; }")
    for i, title in enumerate(STEP_TITLES):
        steps.addItem(f"{i + 1}  {title}")
    steps.setCurrentRow(STEP_ACCESS)
    return steps


def mark_done(steps: QListWidget, done: Sequence[bool]) -> None:
    """Tick the steps that are done (window_state.steps_done)."""
    for i, ok in enumerate(done):
        mark = "  \u2714" if ok else ""
        steps.item(i).setText(f"{i + 1}  {STEP_TITLES[i]}{mark}")


def step_page(index: int, body: QWidget, go_to: Callable[[int], None]) -> QWidget:
    """A step's page: its heading, its body in a scroll area, and a button to the next step."""
    heading = QLabel(f"{index + 1}. {STEP_TITLES[index]}")
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
        button.clicked.connect(lambda _=False, i=index: go_to(i + 1))
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(button)
        layout.addLayout(row)
    return page


def install_help_menu(
    window: QMainWindow, guide: Callable[[], None], log_folder: Callable[[], None], about: Callable[[], None]
) -> None:
    help_menu = window.menuBar().addMenu("&Help")
    help_menu.addAction("Guide (two minutes)", guide)
    help_menu.addAction("Open the log folder", log_folder)
    help_menu.addAction(f"About {APPLICATION}", about)


def about_text() -> str:
    return f"{APPLICATION} {gpi_desktop.__version__}\n\n{ABOUT}"


def frame_margins(window: QWidget) -> QMargins | None:
    """The window manager's frame around `window` (title bar, borders), or None while it is not known yet."""
    if not window.isVisible() or window.frameGeometry() == window.geometry():
        return None
    outer, inner = window.frameGeometry(), window.geometry()
    return QMargins(
        inner.left() - outer.left(),
        inner.top() - outer.top(),
        outer.right() - inner.right(),
        outer.bottom() - inner.bottom(),
    )


if TYPE_CHECKING:
    from PySide6.QtWidgets import QMainWindow as _Window  # what `self` is: the main window
else:
    _Window = object


class FrameActions(_Window):
    """The frame's actions of `MainWindow` (a mixin: `self` is the window): Help, moving between steps, the
    window's place on the screen and the preferences it keeps."""

    if TYPE_CHECKING:  # what this part uses of the window (MainWindow defines them)
        steps: QListWidget
        prompter: Prompter
        qsettings: QSettings
        runs_dir: Path
        settings_panel: SettingsPanel
        model_panel: ModelPanel

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
        self.prompter.tell(self, f"About {APPLICATION}", about_text())

    def go_to(self, step: int) -> None:
        self.steps.setCurrentRow(step)

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
        frame = frame_margins(self) or FRAME_ALLOWANCE  # the real frame, once it is known
        self.setGeometry(fitted_geometry(self.geometry(), available, frame))

    def save_preferences(self) -> None:
        try:
            run, export = self.settings_panel.values(model=self.model_panel.model() or DEFAULT_MODEL)
        except GpiError:
            return  # a half-typed option line is not worth keeping
        prefs.save_settings(self.qsettings, run, export)
        self.qsettings.setValue("window/geometry", self.saveGeometry())
        self.qsettings.sync()

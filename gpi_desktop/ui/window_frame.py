"""The frame of the main window: the list of steps, one scrolling page per step, and the Help menu."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QMargins, Qt
from PySide6.QtGui import QFont
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
from gpi_desktop.ui.shared.resources import APPLICATION
from gpi_desktop.ui.state.window_state import STEP_ACCESS, STEP_ESTIMATE, STEP_TITLES

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

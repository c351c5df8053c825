"""Keep the window inside the screen's available area (the desktop minus taskbars and docks).

Sizes are in Qt's logical pixels, so a 1920x1080 screen at 200% scaling offers
960x540 of them: the same code fits every scale.
"""

from __future__ import annotations

from PySide6.QtCore import QMargins, QRect, QSize

PREFERRED_SIZE = QSize(1120, 740)  # what the steps are laid out for; smaller screens get less and scroll
# Before the window manager has framed the window its title bar and borders are unknown: leave room for them.
FRAME_ALLOWANCE = QMargins(8, 34, 8, 8)


def fitted_geometry(wanted: QRect, available: QRect, frame: QMargins = FRAME_ALLOWANCE) -> QRect:
    """The window's geometry (without its frame): `wanted`, shrunk and moved so that it and its frame
    lie inside `available`."""
    room = available.marginsRemoved(frame)
    width = max(1, min(wanted.width(), room.width()))
    height = max(1, min(wanted.height(), room.height()))
    x = min(max(wanted.x(), room.left()), room.left() + room.width() - width)
    y = min(max(wanted.y(), room.top()), room.top() + room.height() - height)
    return QRect(x, y, width, height)


def centred(size: QSize, available: QRect, frame: QMargins = FRAME_ALLOWANCE) -> QRect:
    """`size` centred in `available` and fitted to it."""
    room = available.marginsRemoved(frame)
    wanted = QRect(0, 0, size.width(), size.height())
    wanted.moveCenter(room.center())
    return fitted_geometry(wanted, available, frame)


def fit_dialog(dialog, wanted: QSize) -> None:
    """Resize a dialog to `wanted`, or less where its screen (or its parent's) has less room."""
    screen = dialog.screen()
    parent = dialog.parentWidget()
    if parent is not None and parent.screen() is not None:
        screen = parent.screen()
    room = screen.availableGeometry().marginsRemoved(FRAME_ALLOWANCE)
    dialog.resize(min(wanted.width(), room.width()), min(wanted.height(), room.height()))

"""Folders shown to the user: opened in the file manager, or, where there is none, said where they are."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices


def open_in_file_manager(folder: Path) -> str | None:
    """Open `folder` in the system's file manager; None when one did, else the sentence that says where it is.

    A desktop without a file manager (a bare window manager, a remote X session) refuses
    silently: the user must at least learn the path.
    """
    if QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
        return None
    return f"No file manager could open the folder on this computer. It is here (select the path to copy it): {folder}"

"""Open the window: `gpi_desktop.ui.app.main(argv) -> int` (what `gpi-desktop` with no command calls)."""

from __future__ import annotations

import sys

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from gpi_desktop.ui.display_check import check_display_libraries
from gpi_desktop.ui.resources import APPLICATION, ORGANIZATION, icon_path


def make_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication, named so that QSettings and the app data folder land in the right place.

    Raises DisplayError, before Qt could abort the process, when a system library its X11 plugin needs is missing.
    """
    app = QApplication.instance()
    if app is None:
        check_display_libraries()
        app = QApplication(list(argv) if argv else [sys.argv[0]])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    app.setDesktopFileName("gpi-desktop")
    if icon_path().is_file():
        app.setWindowIcon(QIcon(str(icon_path())))
    return app


def main(argv: list[str] | None = None) -> int:
    app = make_application(argv)
    from gpi_desktop.ui.main_window import MainWindow

    window = MainWindow()
    window.show()
    return int(app.exec())

"""Open the window: `gpi_desktop.ui.app.main(argv) -> int` (what `gpi-desktop` with no command calls)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from gpi_desktop.core.vocabulary.errors import EXIT_CANCELLED
from gpi_desktop.ui.shared.display_check import check_display_libraries
from gpi_desktop.ui.shared.resources import APPLICATION, ORGANIZATION, icon_path


def make_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication, named so that QSettings and the app data folder land in the right place.

    Raises DisplayError, before Qt could abort the process, when a system library its X11 plugin needs is missing.
    """
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        app = existing
    else:
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
    stopped = _stop_on_sigterm(window)
    code = int(app.exec())
    if stopped():
        print("Stopped. Finished prompts are kept; open GPI Desktop and press Run to continue.", file=sys.stderr)
        return EXIT_CANCELLED
    return code


def _stop_on_sigterm(window) -> Callable[[], bool]:
    """SIGTERM (a logout, `kill`) is "Stop and close": finished work kept, exit code 130, as on the command line."""
    if not hasattr(signal, "SIGTERM"):  # pragma: no cover - Windows has no SIGTERM to catch
        return lambda: False
    received: list[int] = []

    def on_sigterm(number: int, _frame: object) -> None:
        received.append(number)
        window.stop_and_close()

    signal.signal(signal.SIGTERM, on_sigterm)
    # Python runs signal handlers only between its own bytecodes; this tick gives it the chance while Qt waits.
    ticker = QTimer(window)
    ticker.timeout.connect(lambda: None)
    ticker.start(200)
    return lambda: bool(received)

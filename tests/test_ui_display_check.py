"""A missing system library for Qt's X11 plugin ends in one sentence naming the package, not in Qt's abort."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gpi_desktop.core.vocabulary.errors import DisplayError
from gpi_desktop.ui.shared.display_check import check_display_libraries, uses_xcb

NO_CURSOR = (
    "import gpi_desktop.ui.shared.display_check as d; d.library_loads = lambda soname: soname != 'libxcb-cursor.so.0'\n"
)


def test_qt_uses_xcb_on_an_x11_linux_desktop_only():
    assert uses_xcb({}, "linux")
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb"}, "linux")
    assert not uses_xcb({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert not uses_xcb({"QT_QPA_PLATFORM": "wayland;xcb"}, "linux")
    assert not uses_xcb({"XDG_SESSION_TYPE": "wayland"}, "linux")
    assert not uses_xcb({}, "darwin") and not uses_xcb({}, "win32")


def test_a_missing_xcb_cursor_library_is_named_with_its_package():
    with pytest.raises(DisplayError) as caught:
        check_display_libraries({"QT_QPA_PLATFORM": "xcb"}, "linux", loads=lambda s: s != "libxcb-cursor.so.0")
    message = str(caught.value)
    assert "`sudo apt install libxcb-cursor0`" in message and message.count(".") <= 2
    check_display_libraries(
        {"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}, "linux", loads=lambda s: True
    )  # all there: no error
    check_display_libraries({"QT_QPA_PLATFORM": "offscreen"}, "linux", loads=lambda s: False)  # not needed


def test_the_libraries_of_this_machine_are_found():
    check_display_libraries({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}, "linux")  # .ci/run installs them all


def test_gpi_desktop_says_which_package_to_install_instead_of_aborting(tmp_path):
    # No display at all: were the check not made before QApplication, Qt would abort the process (SIGABRT).
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
    env.update(
        QT_QPA_PLATFORM="xcb",
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "cfg"),
        XDG_DATA_HOME=str(tmp_path / "data"),
    )
    code = NO_CURSOR + "import sys; from gpi_desktop.cli import main; sys.exit(main([]))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "sudo apt install libxcb-cursor0" in lines[0], done.stderr
    assert "Aborted" not in done.stderr and "xcb-cursor0 or libxcb-cursor0 is needed" not in done.stderr


def test_no_display_is_said_in_one_sentence_with_the_headless_command():
    with pytest.raises(DisplayError, match="gpi-desktop run"):
        check_display_libraries({}, "linux", loads=lambda s: True)
    check_display_libraries({"DISPLAY": ":0"}, "linux", loads=lambda s: True)

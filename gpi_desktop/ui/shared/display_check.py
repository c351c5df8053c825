"""Before Qt starts: are the system libraries its X11 (xcb) platform plugin needs installed?

Qt itself finds out only inside QApplication and then aborts the process with a
message for developers ("xcb-cursor0 or libxcb-cursor0 is needed ... Aborted").
Looking the libraries up first lets the program end with one sentence naming the
packages to install. This module must not import Qt: it runs before it loads.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

from gpi_desktop.core.vocabulary.errors import DisplayError

# The libraries Qt's xcb plugin loads that a desktop may lack, and the Debian/Ubuntu package of each.
XCB_LIBRARIES = (
    ("libxcb-cursor.so.0", "libxcb-cursor0"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("libxcb-icccm.so.4", "libxcb-icccm4"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
    ("libxcb-image.so.0", "libxcb-image0"),
    ("libxcb-render-util.so.0", "libxcb-render-util0"),
    ("libxcb-shape.so.0", "libxcb-shape0"),
    ("libxcb-randr.so.0", "libxcb-randr0"),
    ("libxcb-xkb.so.1", "libxcb-xkb1"),
    ("libEGL.so.1", "libegl1"),
    ("libGL.so.1", "libgl1"),
    ("libfontconfig.so.1", "libfontconfig1"),
)


def uses_xcb(environ: os._Environ | dict = os.environ, platform: str = sys.platform) -> bool:
    """Whether Qt will pick its X11 plugin: asked for by QT_QPA_PLATFORM, or its default outside a Wayland session."""
    if not platform.startswith("linux"):
        return False
    chosen = environ.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(";")[0].split(":")[0] == "xcb"
    return environ.get("XDG_SESSION_TYPE", "").lower() != "wayland"


def _bundled_dirs() -> list[Path]:
    """Folders that ship their own copies (an installer's bundle, PySide6's wheel)."""
    dirs = []
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        dirs.append(Path(frozen))
    try:
        import importlib.util

        spec = importlib.util.find_spec("PySide6")
        if spec and spec.origin:
            dirs.append(Path(spec.origin).parent / "Qt" / "lib")
    except (ImportError, ValueError):
        pass
    return dirs


def library_loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
        return True
    except OSError:
        return any((folder / soname).is_file() for folder in _bundled_dirs())


def missing_packages(loads=None) -> list[str]:
    """The Debian/Ubuntu packages whose libraries cannot be loaded."""
    loads = loads or library_loads
    return [package for soname, package in XCB_LIBRARIES if not loads(soname)]


def check_display_libraries(environ: os._Environ | dict = os.environ, platform: str = sys.platform, loads=None) -> None:
    """Raise DisplayError (one sentence naming the packages) when the X11 plugin would abort for want of them."""
    if not uses_xcb(environ, platform):
        return
    missing = missing_packages(loads)
    if missing:
        names = " ".join(missing)
        raise DisplayError(
            f"The window needs {'system libraries' if len(missing) > 1 else 'a system library'} that this computer lacks: "
            f"install {'them' if len(missing) > 1 else 'it'} with `sudo apt install {names}` "
            "(as Debian and Ubuntu name them) and start gpi-desktop again."
        )
    if not environ.get("DISPLAY"):
        raise DisplayError(
            "There is no display to open the window on: start gpi-desktop from the desktop, or use "
            "`gpi-desktop run` on a server (see `gpi-desktop run --help`)."
        )

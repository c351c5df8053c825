"""Seconds from launching the window program until X maps its main window.

    xvfb-run -a python3 packaging/linux/time_to_window.py [LAUNCHER] [TIMEOUT_S]

Prints two numbers: the wall-clock seconds from launch until the window titled
"GPI Desktop" is mapped, and the CPU seconds (user + system) the program used
until then. It listens for X's MapNotify events on the root window through
libX11 (ctypes, no polling, so the measurement neither rounds the figure nor
takes CPU from the program it times), goes through the real launcher and Qt's
xcb platform plugin (not the offscreen one), then ends the program.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import signal
import subprocess
import sys
import time

MAP_NOTIFY = 19
SUBSTRUCTURE_NOTIFY_MASK = 1 << 19
TITLE = "GPI Desktop"


class XMapEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("event", ctypes.c_ulong),
        ("window", ctypes.c_ulong),
        ("override_redirect", ctypes.c_int),
    ]


class XEvent(ctypes.Union):
    _fields_ = [("type", ctypes.c_int), ("xmap", XMapEvent), ("pad", ctypes.c_long * 24)]


def _x11():
    lib = ctypes.cdll.LoadLibrary(ctypes.util.find_library("X11") or "libX11.so.6")
    lib.XOpenDisplay.restype = ctypes.c_void_p
    lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    lib.XDefaultRootWindow.restype = ctypes.c_ulong
    lib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    lib.XSelectInput.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_long]
    lib.XConnectionNumber.argtypes = [ctypes.c_void_p]
    lib.XPending.argtypes = [ctypes.c_void_p]
    lib.XNextEvent.argtypes = [ctypes.c_void_p, ctypes.POINTER(XEvent)]
    lib.XFlush.argtypes = [ctypes.c_void_p]
    lib.XInternAtom.restype = ctypes.c_ulong
    lib.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.XGetWindowProperty.argtypes = [
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_long,
        ctypes.c_long,
        ctypes.c_int,
        ctypes.c_ulong,
        ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(ctypes.c_int),
        ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(ctypes.c_void_p),
    ]
    lib.XFree.argtypes = [ctypes.c_void_p]
    return lib


def _title(x, display, window: int) -> str:
    for name in (b"_NET_WM_NAME", b"WM_NAME"):
        atom = x.XInternAtom(display, name, 0)
        kind, fmt, count, after = ctypes.c_ulong(), ctypes.c_int(), ctypes.c_ulong(), ctypes.c_ulong()
        data = ctypes.c_void_p()
        status = x.XGetWindowProperty(
            display,
            window,
            atom,
            0,
            1024,
            0,
            0,
            ctypes.byref(kind),
            ctypes.byref(fmt),
            ctypes.byref(count),
            ctypes.byref(after),
            ctypes.byref(data),
        )
        if status == 0 and data.value:
            text = ctypes.string_at(data.value, count.value).decode("utf-8", "replace")
            x.XFree(data)
            if text:
                return text
    return ""


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    launcher = sys.argv[1] if len(sys.argv) > 1 else "gpi-desktop"
    timeout_s = float(sys.argv[2]) if len(sys.argv) > 2 else 180.0
    x = _x11()
    display = x.XOpenDisplay(None)
    if not display:
        print("time_to_window: cannot open the X display (run under xvfb-run)", file=sys.stderr)
        return 2
    x.XSelectInput(display, x.XDefaultRootWindow(display), SUBSTRUCTURE_NOTIFY_MASK)
    x.XFlush(display)  # listen before the program starts, so no map can be missed
    env = dict(os.environ, QT_QPA_PLATFORM="xcb")  # the real platform plugin, whatever the caller set
    start = time.monotonic()
    program = subprocess.Popen([launcher], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fd = x.XConnectionNumber(display)
    event = XEvent()
    try:
        while time.monotonic() - start < timeout_s and program.poll() is None:
            if not x.XPending(display):
                select.select([fd], [], [], 0.5)
                continue
            x.XNextEvent(display, ctypes.byref(event))
            if (
                event.type == MAP_NOTIFY
                and not event.xmap.override_redirect
                and TITLE in _title(x, display, event.xmap.window)
            ):
                shown = time.monotonic()
                print(f"{shown - start:.2f} {_cpu_seconds(program.pid):.2f}")
                return 0
        print(
            f"time_to_window: no '{TITLE}' window within {timeout_s:.0f} s (program exit code {program.poll()})",
            file=sys.stderr,
        )
        return 1
    finally:
        if program.poll() is None:
            program.send_signal(signal.SIGTERM)
            try:
                program.wait(30)
            except subprocess.TimeoutExpired:
                program.kill()


if __name__ == "__main__":
    raise SystemExit(main())

"""A guard against a PySide6 reference-count bug that would crash a long session.

PySide6 6.12.0 (abi3 wheel) on CPython 3.11 and older drops one reference to
`None` on every call of a Qt method that returns nothing (setText, setValue,
beginInsertRows, ...); 6.11.3 does not. `None` is immortal from Python 3.12 on,
but before that, once its count reaches zero the interpreter aborts with
"none_dealloc: deallocating None". A long run makes several such calls per
prompt, so a 100,000-prompt run would abort part way through.

Where the leak is measured, `install` keeps the count of `None` far from zero
by holding references in a list, topped up by what was lost since the last
look (8 bytes per lost reference). The list itself is given one reference
that is never dropped, so that the interpreter does not release it while
shutting down (which would take None's count below zero and abort the exit).
Where there is no leak it does nothing.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, QTimer

FLOOR = 1_000_000  # far more void calls than a session makes between two top-ups
CHECK_MS = 2_000
_PROBE_CALLS = 200

_reserve: list[None] = []
_pinned = False


def none_leaks() -> bool:
    """True when calling a void Qt method loses a reference to None here."""
    if sys.version_info >= (3, 12):
        return False  # None is immortal: its count cannot reach zero
    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(_PROBE_CALLS):
        probe.setObjectName("probe")
    return sys.getrefcount(None) <= before - _PROBE_CALLS // 2


def top_up() -> None:
    missing = FLOOR - sys.getrefcount(None)
    if missing > 0:
        _reserve.extend([None] * missing)


def install(parent: QObject) -> QTimer | None:
    """Start topping up (owned by `parent`) if this PySide6/Python pair leaks; returns the timer or None."""
    global _pinned
    if not none_leaks():
        return None
    if not _pinned:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(_reserve))
        _pinned = True
    top_up()
    timer = QTimer(parent)
    timer.setInterval(CHECK_MS)
    timer.timeout.connect(top_up)
    timer.start()
    return timer

"""Sizes and durations as people read them: one wording for core's messages, the window and the command line."""

from __future__ import annotations


def human_bytes(n: float | None) -> str:
    """'512 bytes', '1.5 KB', '16.1 GB': decimal units, as the Hub and file managers show them."""
    if n is None:
        return "unknown"
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    """'59 s', '1 min 01 s', '2 h 00 min': to the second under an hour, to the minute above."""
    if seconds is None:
        return "unknown"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"

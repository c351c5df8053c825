"""Sizes, durations and a job's progress as people read them: one wording for core's messages, the window and the
command line."""

from __future__ import annotations

from gpi_desktop.core.vocabulary.progress import Progress


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


def progress_parts(p: Progress) -> list[str]:
    """A generation job's progress in words, for both front ends to join their own way.

    ['12 of 30 prompts', '3,400 of at most 9,000 tokens', '35.2 tokens per second', 'at most 2 min 13 s left']:
    counted in tokens, the time left is the most the job can take at this speed (texts end early, never late).
    """
    parts = [f"{p.done:,} of {p.total:,} prompts"]
    if p.in_tokens and p.done < p.total:
        parts.append(f"{p.tokens_done:,} of at most {p.tokens_most:,} tokens")
    if p.tokens_per_second > 0:
        parts.append(f"{p.tokens_per_second:,.1f} tokens per second")
    left = p.seconds_left
    if left is not None:
        parts.append(
            f"at most {human_duration(left)} left" if p.left_is_bound else f"about {human_duration(left)} left"
        )
    elif p.done and p.done >= p.total:
        parts.append(f"took {human_duration(p.seconds_elapsed)}")
    return parts

"""The terminal's side of a long operation: progress printed to stderr, Ctrl-C and SIGTERM as the Stop button."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from gpi_desktop.core.vocabulary.formatting import human_duration
from gpi_desktop.core.vocabulary.progress import Progress


class CliState:
    """Prints progress to stderr; Ctrl-C asks the engine to stop after the current step."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.cancel = False
        self._last = 0.0

    def set_status(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def set_progress(self, progress: Progress) -> None:
        now = time.monotonic()
        if self.quiet or (now - self._last < 1.0 and progress.done < progress.total):
            return
        self._last = now
        left = progress.seconds_left
        eta = f", about {human_duration(left)} left" if left is not None else ""
        msg = progress.message or f"{progress.done}/{progress.total} prompts, {progress.tokens_per_second:.1f} tokens/s{eta}"
        print(f"  {msg}", file=sys.stderr, flush=True)

    def set_partial_result(self, result) -> None:
        pass

    def is_interruption_requested(self) -> bool:
        return self.cancel


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))


@contextmanager
def stop_on_signals(state: CliState) -> Iterator[None]:
    """Ctrl-C and SIGTERM (`kill`, a logout, SLURM's preemption) ask the work to stop after the current step.

    Both are the Stop button: finished prompts stay in the journal, the run ends with
    exit code 130 and says how to resume.
    """
    previous = {number: signal.signal(number, lambda *_: setattr(state, "cancel", True)) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Outside the long work SIGTERM is Ctrl-C, which Python turns into KeyboardInterrupt (exit 130)."""
    if not hasattr(signal, "SIGTERM"):  # pragma: no cover - Windows has no SIGTERM to catch
        yield
        return

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)



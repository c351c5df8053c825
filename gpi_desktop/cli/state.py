"""The terminal's side of a long operation: progress printed to stderr, Ctrl-C and SIGTERM as the Stop button."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from gpi_desktop.core.vocabulary.formatting import progress_parts
from gpi_desktop.core.vocabulary.progress import Progress


class CliState:
    """Prints progress to stderr; Ctrl-C asks the engine to stop after the current step.

    The engine reports a few times a second; a terminal gets a line a second, a log file (a cluster task's)
    one every LOG_EVERY seconds, and the last report always.
    """

    LOG_EVERY = 30.0

    def __init__(self, quiet: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet = quiet
        self.cancel = False
        self.clock = clock
        self._last: float | None = None

    def set_status(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def set_progress(self, progress: Progress) -> None:
        now = self.clock()
        every = 1.0 if sys.stderr.isatty() else self.LOG_EVERY
        if self.quiet or (self._last is not None and now - self._last < every and progress.done < progress.total):
            return
        self._last = now
        msg = progress.message or ", ".join(progress_parts(progress))
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

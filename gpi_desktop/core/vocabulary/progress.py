"""The small state object that long operations report to (after Orange's TaskState).

Long work in core is a plain function that receives a `TaskState`. The command
line hands it a state that prints; the window's worker hands it one that emits
Qt signals; tests hand it a recording fake (tests/fakes.py). core never knows which.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from gpi_desktop.core.vocabulary.errors import Cancelled


class ProgressKind(Enum):
    """What `done` and `total` count, so that each front end shows it its own way."""

    PROMPTS = "prompts"  # the job's prompts, as the engine finishes them
    BYTES = "bytes"  # a download; `message` says it in words (sizes, speed, time left)
    STEPS = "steps"  # files written or checked, rows read or compared; `message` says what


@dataclass(frozen=True)
class TextSoFar:
    """A prompt still being generated: its data row, its text and tokens so far (greedy decoding: final so far)."""

    row: int
    text: str
    n_tokens: int


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    tokens_per_second: float = 0.0
    seconds_elapsed: float = 0.0
    message: str = ""
    kind: ProgressKind = ProgressKind.PROMPTS
    # A generation job counted in tokens: those made so far (of prompts still running too), and the most the job
    # can make in all (each unfinished prompt at its token limit). An end of text shrinks the latter, so the
    # fraction and the time left from them are bounds: the job ends at that time at the latest, at this speed.
    tokens_done: int = 0
    tokens_most: int = 0
    running: tuple[TextSoFar, ...] = ()  # the prompts in progress, in a report that carries them

    @property
    def in_tokens(self) -> bool:
        return self.tokens_most > 0

    @property
    def fraction(self) -> float:
        if self.in_tokens:
            return min(1.0, self.tokens_done / self.tokens_most)
        return self.done / self.total if self.total else 1.0

    @property
    def left_is_bound(self) -> bool:
        """True when `seconds_left` is the most the job can take (texts that end early make it shorter)."""
        return self.in_tokens

    @property
    def seconds_left(self) -> float | None:
        if self.done >= self.total:
            return None
        if self.in_tokens:
            left = self.tokens_most - self.tokens_done
            return left / self.tokens_per_second if left > 0 and self.tokens_per_second > 0 else None
        if not self.done or self.seconds_elapsed <= 0:
            return None
        return self.seconds_elapsed / self.done * (self.total - self.done)


class TaskState(Protocol):
    def set_status(self, message: str) -> None: ...

    def set_progress(self, progress: Progress) -> None: ...

    def set_partial_result(self, result: Any) -> None: ...

    def is_interruption_requested(self) -> bool: ...


class NullState:
    """A state that ignores everything and is never interrupted."""

    def set_status(self, message: str) -> None:
        pass

    def set_progress(self, progress: Progress) -> None:
        pass

    def set_partial_result(self, result: Any) -> None:
        pass

    def is_interruption_requested(self) -> bool:
        return False


def check_cancel(state: TaskState) -> None:
    """Raise `Cancelled` if the user asked to stop."""
    if state.is_interruption_requested():
        raise Cancelled()

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
class Progress:
    done: int
    total: int
    tokens_per_second: float = 0.0
    seconds_elapsed: float = 0.0
    message: str = ""
    # The producer's own estimate (the engine's, from tokens); with estimated=False it is worked out from done.
    estimate: float | None = None
    estimated: bool = False
    kind: ProgressKind = ProgressKind.PROMPTS

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def seconds_left(self) -> float | None:
        if self.estimated:
            return self.estimate
        if not self.done or self.done >= self.total or self.seconds_elapsed <= 0:
            return None
        return self.seconds_elapsed / self.done * (self.total - self.done)


def estimate_seconds_left(*, elapsed: float, generated: int, in_flight: int, done_rows: int, done_tokens: int,
                          total_rows: int) -> float | None:
    """Time left of a generation job, from the work done so far, counted in tokens.

    `generated`: tokens made in `elapsed` seconds of this session, those of prompts still being generated
    (`in_flight`) included, so a batch whose first prompts finish early is not read as slow; `done_rows`,
    `done_tokens`: the job's finished prompts and their tokens, earlier sessions included. Tokens per prompt
    are known only once a prompt finished: None until then, and when the job is done.
    """
    if done_rows <= 0 or done_rows >= total_rows or generated <= 0 or elapsed <= 0:
        return None
    tokens_left = max(done_tokens / done_rows * (total_rows - done_rows) - in_flight, 0.0)
    return tokens_left / (generated / elapsed)


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

"""A generation job's progress, counted in tokens, and the texts of the prompts in progress.

Counting finished prompts alone froze the progress while a full batch
wrote (with the batch kept full most prompts finish near a wave's end) and
made the time left from the average finished prompt, whose early finishers
are the short ones ("about 0 s left" from the first prompt on). Here the
work done is every token generated, those of prompts still running
included, against the most the job can generate: each unfinished prompt at
its token limit. An end of text only shrinks that most, so the fraction
only grows and the time left from it is a bound: at the current speed the
job ends then at the latest.

Between finished prompts the meter reports a few times a second (never per
token): the running prompts' texts so far (greedy decoding makes them final
token by token) with their token counts. Decoding them costs time on the
engine's thread, so reports are spaced to keep that cost to a small share
of the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from gpi_desktop.core.vocabulary.errors import Cancelled
from gpi_desktop.core.vocabulary.progress import Progress, TaskState, TextSoFar
from gpi_desktop.core.vocabulary.results import PromptResult

if TYPE_CHECKING:
    import torch

REPORT_EVERY = 0.25  # seconds between reports of the running prompts, at the least
DECODE_SHARE = 0.05  # the most of the run's time that decoding the running texts may take


def now() -> float:
    """The meter's clock (tests replace it: a run's reports depend on time)."""
    return time.perf_counter()


class Meter:
    """Progress over the whole job: prompts done of total, tokens done of the most, speed, the running texts."""

    def __init__(
        self,
        state: TaskState,
        *,
        total: int,
        done: int,
        done_tokens: int,
        max_new_tokens: int,
        decode: Callable[[Sequence[int]], str],
        earlier: Iterable[int] = (),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.state, self.total, self.done = state, total, done
        self.max_new_tokens = max_new_tokens
        self.decode, self.clock = decode, clock or now
        self.earlier = frozenset(earlier)  # rows an earlier session finished (rerun with their wave, not counted)
        self.job_tokens = done_tokens  # of every finished prompt of the job
        self.generated = 0  # every token made in this session, rows rerun with their wave included (the speed)
        self.in_flight: dict[int, int] = {}  # tokens so far of each unfinished prompt being generated
        self.start = self.clock()
        self.next_report = self.start + REPORT_EVERY

    def step(self, tokens: int) -> None:
        """`tokens` more tokens were generated (one per running row of a decoding step)."""
        self.generated += tokens

    def finished(self, result: PromptResult) -> None:
        """A prompt of the job finished: its result, then the progress, at once."""
        self.done += 1
        self.job_tokens += result.n_tokens
        self.in_flight.pop(result.row, None)
        self.state.set_partial_result(result)
        self.state.set_progress(self._progress(()))

    def due(self) -> bool:
        return self.clock() >= self.next_report

    def running(self, rows: Callable[[], Iterable[tuple[int, Sequence[int]]]]) -> None:
        """When a report is due: each running prompt's (row, token ids so far), read only then."""
        if not self.due():
            return
        began = self.clock()
        texts = tuple(
            TextSoFar(row, _readable(self.decode(ids)), len(ids)) for row, ids in rows() if row not in self.earlier
        )
        self.in_flight = {t.row: t.n_tokens for t in texts}
        ended = self.clock()
        self.next_report = ended + max(REPORT_EVERY, (ended - began) / DECODE_SHARE)
        self.state.set_progress(self._progress(texts))

    def _progress(self, running: tuple[TextSoFar, ...]) -> Progress:
        elapsed = self.clock() - self.start
        return Progress(
            self.done,
            self.total,
            self.generated / elapsed if elapsed > 0 else 0.0,
            elapsed,
            tokens_done=self.job_tokens + sum(self.in_flight.values()),
            tokens_most=self.job_tokens + (self.total - self.done) * self.max_new_tokens,
            running=running,
        )

    def streamer(self, row: int) -> PromptStreamer:
        """For transformers' generate() on one prompt (gpi_pack's own procedure): counts and shows its tokens."""
        return PromptStreamer(self, row)


class PromptStreamer:
    """transformers' streamer protocol (`put`, `end`) for one prompt run by generate(): the first `put` is the
    prompt, each later one a new token. It makes Stop work within a prompt too."""

    def __init__(self, meter: Meter, row: int) -> None:
        self.meter, self.row = meter, row
        self.ids: list[int] = []
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        new = [int(t) for t in value.reshape(-1).tolist()]
        self.ids.extend(new)
        self.meter.step(len(new))
        self.meter.running(lambda: [(self.row, self.ids)])
        if self.meter.state.is_interruption_requested():
            raise Cancelled()

    def end(self) -> None:
        pass


def _readable(text: str) -> str:
    # A text cut within a character's bytes ends in replacement characters until the next token completes it.
    return text.rstrip("\ufffd")

"""The job's prompts as token ids, and the order and groups the engine runs them in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# A wave is this many batches' worth of prompts: enough for finished rows to be refilled until near the
# wave's end, few enough that a resume reruns little (a wave is rerun whole) and shards stay balanced.
WAVE_BATCHES = 4


@dataclass(frozen=True)
class EncodedPrompt:
    row: int
    ids: tuple[int, ...]


def plan_batches(prompts: Sequence[EncodedPrompt], batch_size: int) -> list[list[EncodedPrompt]]:
    """Longest prompts first (an out-of-memory error shows at once), equal lengths together."""
    ordered = sorted(prompts, key=lambda p: (-len(p.ids), p.row))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def wave_size(batch_size: int) -> int:
    """Prompts per wave: a running batch refills its finished rows from its own wave only (module docstring)."""
    return WAVE_BATCHES * max(1, int(batch_size))


def plan_waves(prompts: Sequence[EncodedPrompt], batch_size: int) -> list[list[EncodedPrompt]]:
    """The job's fixed waves: `plan_batches` of `wave_size(batch_size)` prompts, longest first."""
    return plan_batches(prompts, wave_size(batch_size))

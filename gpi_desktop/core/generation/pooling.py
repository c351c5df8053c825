"""Pooling of the per-step last-layer states (gpi_pack contract, point 4).

Step 0 is the prompt's forward pass; steps 1..n-1 follow each generated token
but the last. `last` keeps step n-1; `mean` and `max` run over steps 1..n-1
(gpi_pack leaves step 0 out); with n == 1 they fall back to step 0 and the
row is flagged. Online versions keep one (H,) accumulator per running row, so
memory does not grow with the number of steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gpi_desktop.core.vocabulary.settings import POOLINGS


def pool_steps(steps: Sequence[torch.Tensor], pooling: str) -> tuple[torch.Tensor, bool]:
    """Reference pooling over a full list of (H,) step states. Returns (vector, pooled_from_step0)."""
    if not steps:
        raise ValueError("no generation steps to pool")
    if pooling == "last":
        return steps[-1].float(), False
    if len(steps) == 1:
        return steps[0].float(), True
    stacked = torch.stack([s.float() for s in steps[1:]])
    if pooling == "mean":
        return stacked.mean(dim=0), False
    if pooling == "max":
        return stacked.max(dim=0).values, False
    raise ValueError(f"unknown pooling {pooling!r}")


class OnlinePool:
    """Running pooled state for a batch of rows; step states arrive one step at a time.

    Accumulates in float32 whatever the model's precision, so a mean over
    1000 bf16 steps does not lose digits.
    """

    def __init__(self, pooling: str, batch: int, hidden: int, device: torch.device | str) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}")
        self.pooling = pooling
        self.first = torch.zeros(batch, hidden, dtype=torch.float32, device=device)
        self.acc = torch.zeros(batch, hidden, dtype=torch.float32, device=device)
        self.count = torch.zeros(batch, dtype=torch.float32, device=device)
        if pooling == "max":
            self.acc.fill_(float("-inf"))

    def add(self, step: int, states: torch.Tensor) -> None:
        """states: (B, H) for every running row at the given step (all rows share the step number)."""
        states = states.float()
        if step == 0:
            self.first.copy_(states)
            if self.pooling == "last":
                self.acc.copy_(states)
            return
        if self.pooling == "last":
            self.acc.copy_(states)
        elif self.pooling == "mean":
            self.acc.add_(states)
        else:
            torch.maximum(self.acc, states, out=self.acc)
        self.count += 1

    def start(self, i: int, state: torch.Tensor) -> None:
        """Row i starts a new prompt (a refilled row of a running batch): `state` (H,) is its step 0."""
        state = state.float()
        self.first[i].copy_(state)
        self.count[i] = 0
        if self.pooling == "last":
            self.acc[i].copy_(state)
        elif self.pooling == "mean":
            self.acc[i].zero_()
        else:
            self.acc[i].fill_(float("-inf"))

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the rows at the given indices (finished rows leave the batch)."""
        self.first = self.first.index_select(0, keep)
        self.acc = self.acc.index_select(0, keep)
        self.count = self.count.index_select(0, keep)

    def result(self, i: int) -> tuple[torch.Tensor, bool]:
        if self.pooling == "last":
            return self.acc[i].clone(), False
        if self.count[i] == 0:
            return self.first[i].clone(), True
        if self.pooling == "mean":
            return self.acc[i] / self.count[i], False
        return self.acc[i].clone(), False

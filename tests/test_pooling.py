"""Pooling of the per-step states, against vectors worked out by hand (gpi_pack contract, point 4)."""

from __future__ import annotations

import pytest
import torch

from gpi_desktop.core.generation.pooling import POOLINGS, OnlinePool, pool_steps

# Three steps of a hidden size of 2: step 0 is the prompt's pass, steps 1 and 2 follow generated tokens.
STEPS = [torch.tensor([9.0, -9.0]), torch.tensor([1.0, 4.0]), torch.tensor([3.0, -2.0])]


@pytest.mark.parametrize(
    "pooling, expected",
    [
        ("last", [3.0, -2.0]),  # step n-1
        ("mean", [2.0, 1.0]),  # (1+3)/2, (4-2)/2: step 0 left out, as gpi_pack does
        ("max", [3.0, 4.0]),  # step 0's 9.0 left out
    ],
)
def test_pool_steps_leaves_the_prompt_pass_out_of_mean_and_max(pooling, expected):
    vector, from_step0 = pool_steps(STEPS, pooling)
    assert vector.tolist() == expected
    assert from_step0 is False


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_pool_steps_with_one_step_falls_back_to_the_prompt_pass_and_says_so(pooling):
    vector, from_step0 = pool_steps(STEPS[:1], pooling)
    assert vector.tolist() == [9.0, -9.0]
    assert from_step0 is True


def test_pool_steps_last_with_one_step_is_the_prompt_pass_unflagged():
    vector, from_step0 = pool_steps(STEPS[:1], "last")
    assert vector.tolist() == [9.0, -9.0]
    assert from_step0 is False


def test_pool_steps_returns_float32_for_half_precision_states():
    vector, _ = pool_steps([s.to(torch.bfloat16) for s in STEPS], "mean")
    assert vector.dtype == torch.float32


def test_pool_steps_refuses_an_unknown_pooling_and_no_steps():
    with pytest.raises(ValueError, match="unknown pooling"):
        pool_steps(STEPS, "median")
    with pytest.raises(ValueError, match="no generation steps"):
        pool_steps([], "last")


def test_online_pool_refuses_an_unknown_pooling():
    with pytest.raises(ValueError, match="unknown pooling"):
        OnlinePool("median", 1, 2, "cpu")


def _online(pooling: str, per_row_steps: list[list[torch.Tensor]]) -> list[tuple[list[float], bool]]:
    """Feed a batch whose rows stop at different steps, dropping each finished row as the engine does."""
    rows = list(range(len(per_row_steps)))
    pool = OnlinePool(pooling, len(rows), 2, "cpu")
    results: dict[int, tuple[list[float], bool]] = {}
    step = 0
    while rows:
        pool.add(step, torch.stack([per_row_steps[r][step] for r in rows]))
        step += 1
        finished = [i for i, r in enumerate(rows) if len(per_row_steps[r]) == step]
        for i in finished:
            vector, flagged = pool.result(i)
            results[rows[i]] = (vector.tolist(), flagged)
        keep = [i for i, r in enumerate(rows) if len(per_row_steps[r]) > step]
        pool.select(torch.tensor(keep, dtype=torch.long))
        rows = [rows[i] for i in keep]
    return [results[r] for r in range(len(per_row_steps))]


@pytest.mark.parametrize("pooling", POOLINGS)
def test_online_pool_equals_the_reference_for_rows_that_stop_at_different_steps(pooling):
    long_row = STEPS + [torch.tensor([-5.0, 10.0])]
    short_row = [torch.tensor([2.0, 2.0])]
    middle_row = STEPS[:2]
    batch = [long_row, short_row, middle_row]
    expected = [(v.tolist(), flag) for v, flag in (pool_steps(row, pooling) for row in batch)]
    assert _online(pooling, batch) == expected


def test_online_pool_mean_and_max_by_hand_after_a_row_left_the_batch():
    # Row 0 stops after step 1; row 1 runs to step 2, so its figures come from its own steps 1-2 only.
    row0 = [torch.tensor([0.0, 0.0]), torch.tensor([6.0, 6.0])]
    row1 = [torch.tensor([7.0, 7.0]), torch.tensor([1.0, -1.0]), torch.tensor([5.0, -3.0])]
    assert _online("mean", [row0, row1]) == [([6.0, 6.0], False), ([3.0, -2.0], False)]
    assert _online("max", [row0, row1]) == [([6.0, 6.0], False), ([5.0, -1.0], False)]
    assert _online("last", [row0, row1]) == [([6.0, 6.0], False), ([5.0, -3.0], False)]


def test_online_pool_accumulates_half_precision_steps_in_float32():
    # 0.1 added 1000 times in bfloat16 drifts far from 0.1; the float32 accumulator keeps the mean close.
    pool = OnlinePool("mean", 1, 1, "cpu")
    pool.add(0, torch.zeros(1, 1, dtype=torch.bfloat16))
    for step in range(1, 1001):
        pool.add(step, torch.full((1, 1), 0.1, dtype=torch.bfloat16))
    vector, _ = pool.result(0)
    assert vector.dtype == torch.float32
    assert vector.item() == pytest.approx(torch.tensor(0.1, dtype=torch.bfloat16).float().item(), rel=1e-5)

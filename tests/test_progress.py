"""The time-left estimate: from the work done so far, in tokens, over the whole job."""

from __future__ import annotations

import pytest

from gpi_desktop.core.vocabulary.progress import Progress, estimate_seconds_left


def test_a_batch_whose_first_prompts_finish_is_not_read_as_slow():
    # 200 prompts of 100 tokens, 32 at a time at 320 tokens/s: the job takes 62.5 s. At 10 s, 7 prompts
    # of the first batch are done and the other 25 are as far along: 52.5 s are left.
    left = estimate_seconds_left(elapsed=10.0, generated=3200, in_flight=2500, done_rows=7, done_tokens=700,
                                 total_rows=200)
    assert left == pytest.approx(52.5)
    counting_prompts = Progress(7, 200, seconds_elapsed=10.0).seconds_left
    assert counting_prompts > 5 * left  # what the window said before: about 1 min 41 s for a 29 s run


def test_after_a_resume_the_earlier_sessions_prompts_are_work_already_done_not_speed():
    # 100 of 200 done earlier; this session made 10 prompts of 50 tokens in 5 s (100 tokens/s).
    left = estimate_seconds_left(elapsed=5.0, generated=500, in_flight=0, done_rows=110, done_tokens=5500,
                                 total_rows=200)
    assert left == pytest.approx(90 * 50 / 100)


@pytest.mark.parametrize("done_rows", [0, 200])
def test_there_is_no_estimate_before_a_prompt_finished_nor_after_the_last(done_rows):
    assert estimate_seconds_left(elapsed=5.0, generated=100, in_flight=100, done_rows=done_rows,
                                 done_tokens=50 * done_rows, total_rows=200) is None


def test_a_producers_own_estimate_wins_even_when_it_has_none():
    assert Progress(5, 10, seconds_elapsed=5.0, estimate=None, estimated=True).seconds_left is None
    assert Progress(5, 10, seconds_elapsed=5.0, estimate=3.0, estimated=True).seconds_left == 3.0

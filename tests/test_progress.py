"""A generation job's progress in tokens: it moves with the work, and its time left is a bound (issue 25, point 1)."""

from __future__ import annotations

import pytest
from fakes import RecordingState

from gpi_desktop.core.generation import meter as meter_module
from gpi_desktop.core.generation.meter import Meter
from gpi_desktop.core.vocabulary.progress import Progress
from gpi_desktop.core.vocabulary.results import STOP_EOS, PromptResult


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _meter(clock, total=30, max_new=300, **kw):
    state = RecordingState()
    return state, Meter(
        state,
        total=total,
        done=kw.pop("done", 0),
        done_tokens=kw.pop("done_tokens", 0),
        max_new_tokens=max_new,
        decode=kw.pop("decode", lambda ids: " ".join(map(str, ids))),
        clock=clock,
        **kw,
    )


def _result(row, n):
    import numpy as np

    return PromptResult(row, "t", np.zeros(2, np.float32), n, STOP_EOS)


def test_progress_moves_while_a_full_batch_writes_and_no_prompt_has_finished():
    # The run: 30 prompts, 300 new tokens, all in one batch; "1 of 30" came near the end.
    clock = FakeClock()
    state, meter = _meter(clock)
    for step in range(1, 146):
        clock.t += 0.5
        meter.step(30)
        meter.running(lambda step=step: [(row, list(range(step))) for row in range(30)])
    reports = state.progress
    assert len(reports) >= 100 and all(p.done == 0 for p in reports)
    fractions = [p.fraction for p in reports]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(145 / 300, abs=0.01)
    last = reports[-1]
    assert last.tokens_done == 30 * 145 and last.tokens_most == 30 * 300
    assert last.tokens_per_second == pytest.approx(60.0)
    assert last.seconds_left == pytest.approx((9000 - 4350) / 60.0)  # never "about 0 s" while work is left
    assert last.left_is_bound
    assert [t.n_tokens for t in last.running] == [145] * 30 and last.running[0].text.startswith("0 1 2")


def test_an_end_of_text_shrinks_the_bound_and_the_fraction_only_grows():
    clock = FakeClock()
    state, meter = _meter(clock, total=2, max_new=100)
    clock.t = 1.0
    meter.step(20)
    meter.running(lambda: [(0, [1] * 10), (1, [2] * 10)])
    before = state.progress[-1]
    meter.finished(_result(0, 11))  # ended by the model at its 11th token
    after = state.progress[-1]
    assert (before.tokens_most, after.tokens_most) == (200, 111)
    assert after.fraction > before.fraction and after.done == 1 and after.running == ()
    assert state.results[-1].row == 0


def test_the_running_texts_are_read_only_a_few_times_a_second_and_never_per_token():
    clock = FakeClock()
    asked = []
    state, meter = _meter(clock)
    for _ in range(1000):  # a thousand steps within one second of a fast model
        clock.t += 0.001
        meter.running(lambda: asked.append(1) or [(0, [1])])
    assert len(asked) == len(state.progress) <= 1 / meter_module.REPORT_EVERY


def test_slow_decoding_spaces_the_reports_so_it_takes_a_small_share_of_the_run():
    clock = FakeClock()

    def slow_decode(ids):
        clock.t += 0.1  # 0.1 s to decode the running texts
        return "x"

    _state, meter = _meter(clock, decode=slow_decode)
    clock.t = 1.0
    meter.running(lambda: [(0, [1])])
    assert meter.next_report - clock.t == pytest.approx(0.1 / meter_module.DECODE_SHARE)


def test_rows_an_earlier_session_finished_are_neither_shown_nor_counted_again():
    clock = FakeClock()
    state, meter = _meter(clock, total=4, max_new=10, done=1, done_tokens=7, earlier={3})
    clock.t = 1.0
    meter.running(lambda: [(3, [1, 2]), (0, [1, 2, 3])])
    last = state.progress[-1]
    assert [t.row for t in last.running] == [0]
    assert (last.tokens_done, last.tokens_most) == (7 + 3, 7 + 3 * 10)


def test_a_text_cut_inside_a_character_shows_without_the_replacement_character():
    clock = FakeClock()
    state, meter = _meter(clock, decode=lambda ids: "caf\ufffd")
    clock.t = 1.0
    meter.running(lambda: [(0, [1])])
    assert state.progress[-1].running[0].text == "caf"


def test_progress_counted_in_prompts_keeps_its_own_estimate_and_no_time_is_claimed_at_the_end():
    assert Progress(5, 10, seconds_elapsed=5.0).seconds_left == 5.0
    assert not Progress(5, 10, seconds_elapsed=5.0).left_is_bound
    done = Progress(10, 10, tokens_per_second=5.0, tokens_done=50, tokens_most=50)
    assert done.seconds_left is None and done.fraction == 1.0


def test_the_command_line_says_the_tokens_and_the_time_left_as_a_bound_and_keeps_a_log_short(capsys):
    from gpi_desktop.cli.state import CliState

    clock = FakeClock()
    state = CliState(clock=clock)  # stderr is captured: not a terminal, a log
    running = Progress(0, 30, tokens_per_second=60.0, tokens_done=4350, tokens_most=9000)
    state.set_progress(running)
    for _ in range(100):  # four reports a second for 25 s: no line
        clock.t += 0.25
        state.set_progress(running)
    clock.t += CliState.LOG_EVERY
    state.set_progress(running)
    state.set_progress(
        Progress(30, 30, tokens_per_second=60.0, seconds_elapsed=150.0, tokens_done=6000, tokens_most=6000)
    )
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "  0 of 30 prompts, 4,350 of at most 9,000 tokens, 60.0 tokens per second, at most 1 min 18 s left"
    ] * 2 + ["  30 of 30 prompts, 60.0 tokens per second, took 2 min 30 s"]

"""While a run works the window moves with it: progress in tokens, texts as they grow, and what Stop throws away
(issue 25, points 1, 2 and 5), on a long fake run that finishes no prompt."""

from __future__ import annotations

import threading

import pytest

from gpi_desktop.core.vocabulary.errors import Cancelled
from gpi_desktop.core.vocabulary.progress import Progress, TextSoFar
from gpi_desktop.ui.shared.table_models import COL_STOP, COL_TEXT, COL_TOKENS, WAITING

ROWS, MAX_NEW, STEPS, SPEED = 8, 300, 40, 80.0  # tokens per second: 8 rows, 10 steps a second


def _long_run(reports: int, go_on: threading.Event):
    """A run_job that writes every prompt for `reports` reports (a quarter second apart), then waits for Stop."""

    def run_job(run, state, *_policy_and_memory):
        state.set_status("Generating 8 texts on cpu (8 at a time)\u2026")
        for step in range(1, reports + 1):
            tokens = 2 * step  # each row's tokens so far
            state.set_progress(
                Progress(
                    0,
                    ROWS,
                    SPEED,
                    step / 4,
                    tokens_done=ROWS * tokens,
                    tokens_most=ROWS * MAX_NEW,
                    running=tuple(TextSoFar(row, " ".join(["word"] * tokens), tokens) for row in range(ROWS)),
                )
            )
        go_on.wait(60)
        while not state.is_interruption_requested():
            go_on.wait(0.01)
        raise Cancelled()

    return run_job


@pytest.fixture
def long_run(monkeypatch):
    from gpi_desktop.core.job import job

    go_on = threading.Event()
    monkeypatch.setattr(job, "run_job", _long_run(STEPS, go_on))
    yield go_on
    go_on.set()


def test_progress_and_texts_move_while_no_prompt_has_finished_and_stop_says_what_starts_over(
    qtbot, make_window, tiny_llama, prompts_csv, long_run
):
    from window_helpers import prepare

    window = make_window({"Stop the run?": "Stop"})
    prepare(qtbot, window, tiny_llama, prompts_csv, batch=8, max_new=MAX_NEW)
    page = window.run_page
    seen = []
    window.runner.progress.connect(
        lambda p: seen.append(
            (
                page.progress_bar.text(),
                page.progress_label.text(),
                page.results.data(page.results.index(3, COL_TEXT)),
                page.results.data(page.results.index(3, COL_TOKENS)),
            )
        )
    )
    window.run_page.run_button.click()
    qtbot.waitUntil(lambda: len(seen) == STEPS, timeout=60_000)

    bars, lines, texts, tokens = zip(*seen)
    assert all("0 of 8 prompts" in bar for bar in bars) and bars[-1] != bars[0]  # the bar moves, no prompt done
    assert len(set(lines)) == STEPS  # every report says something new
    assert "at most" in lines[-1] and "640 of at most 2,400 tokens" in lines[-1]
    assert "about 0 s" not in " ".join(lines)
    assert texts[0] == "word word" and len(texts[0]) < len(texts[10]) < len(texts[-1]) and tokens[-1] == "80"
    assert page.results.data(page.results.index(3, COL_STOP)) == "writing\u2026"
    assert not window.settings_panel.lock_note.isHidden()  # greyed settings say why (point 8)

    page.view.selectRow(3)  # the detail view follows the text as it grows
    assert "being written: 80 tokens so far" in page.detail_label.text()
    assert page.generated_text.toPlainText() == " ".join(["word"] * 80)

    long_run.set()
    with qtbot.waitSignal(window.runner.cancelled, timeout=60_000):
        page.cancel_button.click()
    asked = window.prompter.asked[-1]
    assert asked.title == "Stop the run?"
    assert asked.text.startswith("8 texts in progress, about 8 s of work, will start over")  # 640 tokens at 80/s
    assert page.results.data(page.results.index(3, COL_TEXT)) == WAITING  # they start over: shown so
    assert "the 8 texts that were in progress start over" in page.status_label.text()


def test_keep_running_leaves_the_run_going(qtbot, make_window, tiny_llama, prompts_csv, long_run):
    from window_helpers import prepare

    window = make_window({"Stop the run?": "Keep running"})
    prepare(qtbot, window, tiny_llama, prompts_csv, batch=8, max_new=MAX_NEW)
    window.run_page.run_button.click()
    qtbot.waitUntil(lambda: len(window.run_page.results.writing()) == ROWS, timeout=60_000)
    window.run_page.cancel_button.click()
    assert window.runner.is_busy() and window.run_page.cancel_button.isEnabled()
    assert window.run_page.cancel_button.text() == "Stop"

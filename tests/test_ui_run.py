"""Steps 5-6 on a tiny model: run with progress, preview, stop and continue, close during a run, export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import PROMPTS
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from window_helpers import MAX_NEW, prepare, run_to_end, stop_after_first_result, wait_idle

from gpi_desktop.core.vocabulary.results import STOP_LENGTH
from gpi_desktop.ui.shared.table_models import (
    COL_MATCH,
    COL_PROMPT,
    COL_ROW,
    COL_STOP,
    COL_TEXT,
    COL_TOKENS,
    DISPLAY_CHARS,
    LIMIT_ROW_BRUSH,
    _one_line,
)


def test_a_run_reaches_the_end_with_progress_and_fills_the_preview(qtbot, make_window, tiny_llama, prompts_csv):
    window = make_window()
    prepare(qtbot, window, tiny_llama, prompts_csv)
    progress = []
    window.runner.progress.connect(progress.append)
    partial = []
    window.runner.partial_result.connect(partial.append)
    outcome = run_to_end(qtbot, window)

    n = len(PROMPTS)
    assert len(outcome.results) == n
    assert progress and progress[-1].done == n and progress[-1].total == n
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert sorted(r.row for r in partial) == list(range(n))  # each text reached the preview as it finished
    assert window.run_page.progress_bar.value() == window.run_page.progress_bar.maximum()
    assert window.run_page.status_label.text().startswith(f"Done: {n} texts and vectors.")
    assert window.run_page.export_button.isEnabled()
    assert window.export_page.export_button.isEnabled()
    assert window.steps.item(4).text().endswith("\u2714")


def test_the_preview_shows_row_prompt_text_tokens_and_why_it_stopped(qtbot, make_window, tiny_llama, prompts_csv):
    window = make_window()
    prepare(qtbot, window, tiny_llama, prompts_csv)
    outcome = run_to_end(qtbot, window)
    model = window.run_page.results
    assert model.rowCount() == len(PROMPTS)
    for pos, result in enumerate(outcome.results):
        cell = lambda col, pos=pos: model.data(model.index(pos, col))  # noqa: E731
        assert cell(COL_ROW) == str(result.row) == str(pos)
        assert cell(COL_PROMPT) == " ".join(PROMPTS[pos].split())
        assert cell(COL_TEXT) == _one_line(result.text, DISPLAY_CHARS)
        assert cell(COL_TOKENS) == str(result.n_tokens)
        assert cell(COL_STOP) == ("Token limit" if result.stop_reason == STOP_LENGTH else "End of text")
        background = model.data(model.index(pos, COL_TEXT), Qt.ItemDataRole.BackgroundRole)
        assert (background == LIMIT_ROW_BRUSH) == result.hit_limit
    stops = {r.stop_reason for r in outcome.results}
    assert len(stops) == 2, "the tiny model should give both kinds of stop within the limit"
    assert window.run_page.view.isColumnHidden(COL_MATCH)

    window.run_page.view.selectRow(2)
    assert window.run_page.prompt_text.toPlainText() == PROMPTS[2]
    assert window.run_page.generated_text.toPlainText() == outcome.results[2].text
    assert window.run_page.detail_label.text().startswith(f"Row 2 \u00b7 {outcome.results[2].n_tokens} tokens")


def test_the_repeat_task_shows_how_closely_each_text_matches_its_input(qtbot, make_window, tiny_llama, prompts_csv):
    window = make_window()
    prepare(qtbot, window, tiny_llama, prompts_csv, task="repeat")
    outcome = run_to_end(qtbot, window)
    assert outcome.spec.settings.task == "repeat"
    assert not window.run_page.view.isColumnHidden(COL_MATCH)
    model = window.run_page.results
    for pos in range(model.rowCount()):
        assert model.data(model.index(pos, COL_MATCH)).endswith("%")
    window.run_page.view.selectRow(0)
    assert "match with the input" in window.run_page.detail_label.text()


def test_a_journal_that_cannot_be_continued_says_start_again_in_the_windows_words_and_run_then_offers_it(
    qtbot, make_window, tiny_llama, prompts_csv
):
    window = make_window({"Continue the earlier run?": "Start again from the beginning"})
    prepare(qtbot, window, tiny_llama, prompts_csv, batch=1, max_new=20)
    stop_after_first_result(qtbot, window)
    header_path = window.state.run_work_dir / "journal.json"
    header = json.loads(header_path.read_text(encoding="utf-8"))
    del header["plan"]["batch_size"]  # a journal whose plan is lost cannot give the files an unbroken run gives
    del header["crc"]  # as a version before the header's seal wrote it (a sealed plan cannot be lost unnoticed)
    header_path.write_text(json.dumps(header), encoding="utf-8")

    with qtbot.waitSignal(window.run_failed, timeout=120_000) as blocker:
        window.run_page.run_button.click()  # stopped in this session: continues without asking, and is refused
    assert "lost its batch plan" in blocker.args[0]
    assert "choose \u201cStart again from the beginning\u201d" in blocker.args[0]
    assert "--overwrite" not in blocker.args[0] and "New run" not in blocker.args[0]
    assert window.prompter.asked == []

    with qtbot.waitSignal(window.run_finished, timeout=120_000) as finished:
        window.run_page.run_button.click()  # asks this time, so that starting again can be chosen
    assert [a.title for a in window.prompter.asked] == ["Continue the earlier run?"]
    assert len(finished.args[0].results) == len(PROMPTS)


def test_stop_keeps_finished_texts_and_run_continues_without_redoing_them(qtbot, make_window, tiny_llama, prompts_csv):
    window = make_window()
    prepare(qtbot, window, tiny_llama, prompts_csv, batch=1, max_new=20)
    stop_after_first_result(qtbot, window)
    kept = window.run_page.results.finished_count()
    assert 1 <= kept < len(PROMPTS)
    assert window.run_page.status_label.text().startswith(f"Stopped. {kept} finished texts are kept")
    assert window.outcome is None and not window.export_page.export_button.isEnabled()

    again = []
    window.runner.partial_result.connect(again.append)
    outcome = run_to_end(qtbot, window)
    assert window.prompter.asked == []  # stopped in this session: it simply continues
    assert len(again) == len(PROMPTS) - kept  # finished prompts were not redone
    assert [r.row for r in outcome.results] == list(range(len(PROMPTS)))
    assert window.run_page.results.rowCount() == len(PROMPTS)


def test_a_new_window_offers_to_continue_an_unfinished_run(qtbot, make_window, tiny_llama, prompts_csv):
    first = make_window()
    prepare(qtbot, first, tiny_llama, prompts_csv, batch=1, max_new=20)
    stop_after_first_result(qtbot, first)
    kept = first.run_page.results.finished_count()
    first.close()

    second = make_window({"Continue the earlier run?": "Continue where it stopped"})
    prepare(qtbot, second, tiny_llama, prompts_csv, batch=1, max_new=20)
    fresh = []
    second.runner.partial_result.connect(fresh.append)
    outcome = run_to_end(qtbot, second)
    asked = second.prompter.asked
    assert [a.title for a in asked] == ["Continue the earlier run?"]
    assert f"{kept} of {len(PROMPTS)} prompts are done" in asked[0].text
    assert len(fresh) == len(PROMPTS) - kept
    assert len(outcome.results) == len(PROMPTS)
    assert second.run_page.results.finished_count() == len(PROMPTS)  # resumed rows are shown at the end too


def test_start_again_from_the_beginning_redoes_every_prompt(qtbot, make_window, tiny_llama, prompts_csv):
    first = make_window()
    prepare(qtbot, first, tiny_llama, prompts_csv, batch=1, max_new=20)
    stop_after_first_result(qtbot, first)
    first.close()
    second = make_window({"Continue the earlier run?": "Start again from the beginning"})
    prepare(qtbot, second, tiny_llama, prompts_csv, batch=1, max_new=20)
    fresh = []
    second.runner.partial_result.connect(fresh.append)
    run_to_end(qtbot, second)
    assert len(fresh) == len(PROMPTS)


def test_closing_during_a_run_asks_then_stops_cleanly_and_closes(qtbot, make_window, tiny_llama, prompts_csv):
    window = make_window({"Stop and close?": "Stop and close"})
    prepare(qtbot, window, tiny_llama, prompts_csv, batch=1, max_new=40)
    with qtbot.waitSignal(window.runner.partial_result, timeout=120_000):
        window.run_page.run_button.click()
    assert window.runner.is_busy()
    window.close()
    assert [a.title for a in window.prompter.asked] == ["Stop and close?"]
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    assert not window.runner.is_busy()
    assert not window.runner._thread.isRunning()  # the worker thread ended before the window went
    assert window.run_page.results.finished_count() < len(PROMPTS)


def test_closing_during_a_run_can_be_declined(qtbot, make_window, tiny_llama, prompts_csv):
    window = make_window({"Stop and close?": "Keep working"})
    prepare(qtbot, window, tiny_llama, prompts_csv, batch=1, max_new=20)
    with qtbot.waitSignal(window.run_finished, timeout=120_000):
        window.run_page.run_button.click()
        qtbot.waitUntil(window.runner.is_busy, timeout=10_000)
        window.close()
        assert window.isVisible()
    assert window.outcome is not None and len(window.outcome.results) == len(PROMPTS)
    assert window.prompter.asked[0].default_choice == "Keep working"  # Enter never stops a run


def test_export_writes_the_gpi_pack_folder_and_shows_how_to_load_it(
    qtbot, make_window, tiny_llama, prompts_csv, tmp_path
):
    window = make_window({"Export finished": "Close"})
    prepare(qtbot, window, tiny_llama, prompts_csv)
    outcome = run_to_end(qtbot, window)
    work_dir = window.state.run_work_dir
    assert work_dir is not None and work_dir.is_dir()
    folder = tmp_path / "export"
    with qtbot.waitSignal(window.export_finished, timeout=60_000):
        assert window.export_to(folder)

    n, h = len(PROMPTS), outcome.results[0].vector.size
    matrix = np.load(folder / "hidden_states.npy")
    assert matrix.shape == (n, h) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, np.stack([r.vector for r in outcome.results]))
    frame = pd.read_pickle(folder / "generated_texts.pkl")
    assert list(frame.columns) == ["X", "P"]
    assert frame["P"].tolist() == PROMPTS
    assert frame["X"].tolist() == [r.text for r in outcome.results]
    assert sorted(p.name for p in (folder / "hidden").iterdir()) == sorted(f"hidden_{k}.pt" for k in range(n))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["settings"]["max_new_tokens"] == MAX_NEW
    assert (folder / "generated_texts.csv").read_bytes().startswith(b"\xef\xbb\xbf")

    code = window.export_page.code.toPlainText()
    assert "load_hiddens(" in code and str(folder / "hidden") in code and "prefix='hidden_'" in code
    assert len(code.splitlines()) == 3
    assert [a.title for a in window.prompter.asked] == ["Export finished"]
    assert window.prompter.asked[0].icon == QMessageBox.Icon.Information  # news, not a question
    assert "load_hiddens" in window.prompter.asked[0].details
    assert not work_dir.exists()  # the export holds everything; the journal is gone
    assert window.steps.item(5).text().endswith("\u2714")


def test_an_export_that_fails_with_our_bug_names_the_export_and_the_log_and_can_be_tried_again(
    qtbot, make_window, tiny_llama, prompts_csv, tmp_path, monkeypatch
):
    from gpi_desktop.core.job import job

    window = make_window({"Export finished": "Close"})
    prepare(qtbot, window, tiny_llama, prompts_csv)
    run_to_end(qtbot, window)
    real_export = job.export_run

    def broken(*args, **kwargs):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(job, "export_run", broken)
    with qtbot.waitSignal(window.runner.failed, timeout=60_000):
        assert window.export_to(tmp_path / "first")
    shown = window.export_page.state_label.text()
    assert "The export could not be written: something unexpected went wrong (RuntimeError)" in shown
    assert "log file" in shown and "a bug of ours" not in shown  # the details are for the log, not the user
    assert window.settings_panel.isEnabled() and window.export_page.export_button.isEnabled()
    assert window.run_page.status_label.text().startswith("Done:")  # a failed export is no failed run

    monkeypatch.setattr(job, "export_run", real_export)
    with qtbot.waitSignal(window.export_finished, timeout=60_000):
        assert window.export_to(tmp_path / "second")
    assert (tmp_path / "second" / "manifest.json").is_file()


@pytest.mark.parametrize("answer", ["Cancel", "Write into it"])
def test_export_into_a_folder_with_files_asks_first(qtbot, make_window, tiny_llama, prompts_csv, tmp_path, answer):
    window = make_window({"The folder is not empty": answer, "Export finished": "Close"})
    prepare(qtbot, window, tiny_llama, prompts_csv)
    run_to_end(qtbot, window)
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    if answer == "Cancel":
        assert not window.export_to(folder)
        assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    else:
        with qtbot.waitSignal(window.export_finished, timeout=60_000):
            assert window.export_to(folder)
        assert (folder / "manifest.json").is_file()
        assert (folder / "notes.txt").read_text() == "mine"  # nothing but the export's own files is touched
    assert window.prompter.asked[0].title == "The folder is not empty"
    assert window.prompter.asked[0].default_choice == "Cancel"  # Enter never writes into someone's folder


def test_run_is_blocked_with_a_plain_reason_until_the_prompts_are_usable(qtbot, make_window, tiny_llama, tmp_path):
    window = make_window()
    window.model_panel.set_model(str(tiny_llama))
    wait_idle(qtbot, window)
    assert window.run_blocker() == "Open a prompts file first (step 3)."
    assert not window.run_page.run_button.isEnabled()
    holes = tmp_path / "holes.csv"
    pd.DataFrame({"text": ["one", "", "three"]}).to_csv(holes, index=False)
    window.prompts_panel.load_file(holes)
    wait_idle(qtbot, window)
    assert "Some rows have no text" in window.run_blocker()
    assert not window.run_page.run_button.isEnabled()


def test_a_folder_that_is_not_a_model_is_reported_in_plain_words(qtbot, make_window, prompts_csv, tmp_path):
    window = make_window()
    not_a_model = tmp_path / "empty-folder"
    not_a_model.mkdir()
    window.model_panel.set_model(str(not_a_model))
    window.prompts_panel.load_file(prompts_csv)
    wait_idle(qtbot, window)
    assert "does not hold a model" in window.model_panel.target_label.text()
    window.start_run()
    wait_idle(qtbot, window)
    assert "does not hold a model" in window.run_page.status_label.text()
    assert not window.runner.is_busy()


def test_a_hub_model_that_cannot_be_fetched_fails_in_plain_words_with_its_page(
    qtbot, make_window, prompts_csv, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    window = make_window()
    window.model_panel.set_model("someone/not-downloaded-model")
    window.prompts_panel.load_file(prompts_csv)
    wait_idle(qtbot, window)
    with qtbot.waitSignal(window.run_failed, timeout=120_000) as blocker:
        window.run_page.run_button.click()
    url = "https://huggingface.co/someone/not-downloaded-model"
    assert url in blocker.args[0]
    assert f'<a href="{url}">' in window.run_page.status_label.text()
    assert "Traceback" not in window.run_page.status_label.text()
    assert window.outcome is None and not window.runner.is_busy()


def test_export_uses_the_file_names_in_the_form_and_says_what_the_results_were_made_with(
    qtbot, make_window, tiny_llama, prompts_csv, tmp_path
):
    window = make_window({"Export finished": "Close"})
    prepare(qtbot, window, tiny_llama, prompts_csv)
    run_to_end(qtbot, window)
    made_with = window.export_page.state_label.text()
    assert f"{len(PROMPTS)} texts and vectors are ready to export" in made_with
    assert "pooling last" in made_with and f"at most {MAX_NEW} new tokens" in made_with
    assert "64 numbers per vector" in made_with and "prompts.csv" in made_with
    window.settings_panel.prefix_edit.setText("vec_")  # names do not change the numbers: no new run needed
    window.settings_panel.save_name_edit.setText("speeches")
    folder = tmp_path / "renamed"
    with qtbot.waitSignal(window.export_finished, timeout=60_000):
        assert window.export_to(folder)
    assert (folder / "speeches.pkl").is_file() and (folder / "hidden" / "vec_0.pt").is_file()
    assert "prefix='vec_'" in window.export_page.code.toPlainText()


def test_the_window_stays_responsive_while_the_model_loads_and_generates(qtbot, make_window, tiny_llama, tmp_path):
    import time

    import pandas as pd
    from conftest import PROMPTS
    from PySide6.QtCore import QTimer

    # Enough work that the run lasts well over the 20 ticks the check needs, however fast the engine gets.
    many = tmp_path / "many.csv"
    pd.DataFrame({"text": [f"{p} ({i})" for i in range(6) for p in PROMPTS]}).to_csv(many, index=False)
    window = make_window()
    prepare(qtbot, window, tiny_llama, many, batch=1, max_new=40)
    ticks = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    started = time.monotonic()
    run_to_end(qtbot, window)
    took = time.monotonic() - started
    timer.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) > 20
    # The main thread only shows what the worker reports; work on it would leave a gap as long as the run.
    # (A busy shared machine can pause any process briefly, hence the allowance.)
    assert max(gaps) < max(1.0, took / 4), f"the event loop stalled for {max(gaps):.2f} s of a {took:.1f} s run"


def test_stop_and_close_during_a_run_stops_without_asking_and_closes(qtbot, make_window, tiny_llama, prompts_csv):
    window = make_window()
    prepare(qtbot, window, tiny_llama, prompts_csv, batch=1, max_new=40)
    with qtbot.waitSignal(window.runner.partial_result, timeout=120_000):
        window.run_page.run_button.click()
    window.stop_and_close()  # what SIGTERM does (see ui/app.py)
    assert window.prompter.asked == []
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    assert not window.runner.is_busy()
    assert window.run_page.results.finished_count() < len(PROMPTS)


@pytest.mark.parametrize("answer", ["Change the settings", "Run anyway"])
def test_a_run_the_memory_estimate_rejects_is_stopped_until_the_user_says_run_anyway(
    answer, qtbot, make_window, tiny_llama, prompts_csv, monkeypatch
):
    from gpi_desktop.core.model import memory

    tiny_ram = memory.DeviceMemory("this computer's memory (RAM)", 100_000, 200_000)
    monkeypatch.setattr(memory, "available_memory", lambda device="auto": [tiny_ram])
    window = make_window({"may not fit": answer})
    prepare(qtbot, window, tiny_llama, prompts_csv)
    if answer == "Run anyway":
        outcome = run_to_end(qtbot, window)
        assert len(outcome.results) == len(PROMPTS)
    else:
        with qtbot.waitSignal(window.run_failed, timeout=120_000) as blocker:
            window.run_page.run_button.click()
        assert "will not fit" in blocker.args[0] and "--ignore-memory-check" not in blocker.args[0]
        assert window.outcome is None
    asked = [a for a in window.prompter.asked if "may not fit" in a.title]
    assert len(asked) == 1 and "will not fit" in asked[0].text and asked[0].default == 0


def test_the_current_job_without_a_prompts_file_says_to_open_one(make_window):
    from gpi_desktop.core.vocabulary.errors import InputError

    window = make_window()
    # Found by mypy: current_spec read the table's path while no file was open (an AttributeError, our bug).
    with pytest.raises(InputError, match="Open a prompts file first"):
        window.current_spec()

"""What the run page says is true: the model's figures, the table of the job's rows, the time left."""

from __future__ import annotations

from window_helpers import prepare, run_to_end, stop_after_first_result, wait_idle

from gpi_desktop.ui.main_window import STEP_MODEL

HUB_MODEL = "meta-llama/Llama-3.1-8B-Instruct"  # HF_HUB_OFFLINE=1 in the tests: its config cannot be read


def test_a_hub_models_width_is_not_known_yet_while_it_loads_and_gets_no_check_mark(qtbot, make_window, tiny_llama):
    window = make_window()
    window.model_panel.set_model(str(tiny_llama))
    wait_idle(qtbot, window)
    assert "64 numbers per vector" in window.run_page.summary_label.text()
    assert window.steps.item(STEP_MODEL).text().endswith("\u2714")

    window.model_panel.set_model(HUB_MODEL)
    summary = window.run_page.summary_label.text()
    assert "64 numbers per vector" not in summary  # the tiny model's figure is not the 8B model's
    assert "not known yet" in summary
    assert not window.steps.item(STEP_MODEL).text().endswith("\u2714")
    wait_idle(qtbot, window)
    assert window.model_panel.last_target is None or not window.model_panel.last_target.hidden_size
    assert "not known yet" in window.run_page.summary_label.text()
    assert not window.steps.item(STEP_MODEL).text().endswith("\u2714")  # unchecked: no check mark


def test_after_stop_the_table_lists_every_row_of_the_job_with_the_unfinished_ones_waiting(
    qtbot, make_window, tiny_llama, prompts_csv
):
    from conftest import PROMPTS

    from gpi_desktop.ui.shared.table_models import COL_PROMPT, COL_ROW, COL_TEXT, WAITING

    first = make_window()
    prepare(qtbot, first, tiny_llama, prompts_csv, batch=1, max_new=20)
    stop_after_first_result(qtbot, first)
    model = first.run_page.results
    kept = {r: model.result_at(r).text for r in range(model.rowCount()) if model.result_at(r) is not None}
    assert model.rowCount() == len(PROMPTS) and 1 <= len(kept) < len(PROMPTS)
    for row in range(len(PROMPTS)):  # input order, every row, the unfinished ones waiting
        assert model.data(model.index(row, COL_ROW)) == str(row)
        assert model.data(model.index(row, COL_PROMPT)) == PROMPTS[row]
        if row not in kept:
            assert model.data(model.index(row, COL_TEXT)) == WAITING
    first.close()

    # The next session shows the first one's rows as soon as it continues, not only its own.
    second = make_window({"Continue the earlier run?": "Continue where it stopped"})
    prepare(qtbot, second, tiny_llama, prompts_csv, batch=1, max_new=20)
    seen = {}

    def on_busy(busy):
        if busy:
            table = second.run_page.results
            seen.update({r: table.result_at(r).text for r in kept if table.result_at(r) is not None})
            seen["rows"] = table.rowCount()

    second.runner.busy_changed.connect(on_busy)
    with qtbot.waitSignal(second.run_finished, timeout=120_000):
        second.run_page.run_button.click()
    assert seen.pop("rows") == len(PROMPTS)
    assert seen == kept


def test_stop_clears_the_time_left_and_the_end_of_a_resumed_job_reports_the_whole_job(
    qtbot, make_window, tiny_llama, prompts_csv
):
    import json

    from gpi_desktop.ui.shared.formatting import job_figures_line

    window = make_window()
    prepare(qtbot, window, tiny_llama, prompts_csv, batch=1, max_new=20)
    stop_after_first_result(qtbot, window)
    line = window.run_page.progress_label.text()
    assert "left" not in line and "per second" not in line and "of 8 prompts" in line
    plan = json.loads((window.state.run_work_dir / "journal.json").read_text())["plan"]
    first_session = plan["seconds_spent"]
    assert first_session > 0

    outcome = run_to_end(qtbot, window)
    assert outcome.seconds_spent > first_session  # both sessions are counted
    tokens = sum(r.n_tokens for r in outcome.results)  # every row's, the first session's included
    assert window.run_page.progress_label.text() == job_figures_line(
        len(outcome.results), tokens, outcome.seconds_spent
    )


def test_the_run_reports_a_token_based_estimate_while_it_runs(qtbot, make_window, tiny_llama, prompts_csv):
    window = make_window()
    prepare(qtbot, window, tiny_llama, prompts_csv, batch=4, max_new=20)
    progress = []
    window.runner.progress.connect(progress.append)
    run_to_end(qtbot, window)
    assert progress and all(p.in_tokens for p in progress)
    assert progress[-1].seconds_left is None  # done: no time left is claimed
    assert any(p.seconds_left is not None for p in progress[:-1])


# --- unfinished jobs are offered at start and reopen in one click ---


def _stopped_job(qtbot, make_window, tiny_llama, csv, **settings):

    window = make_window()
    prepare(qtbot, window, tiny_llama, csv, batch=1, max_new=20)
    sp = window.settings_panel
    if "pooling" in settings:
        sp.pooling_box.setCurrentIndex(sp.pooling_box.findData(settings["pooling"]))
    stop_after_first_result(qtbot, window)
    kept = window.run_page.results.finished_count()
    window.close()
    return kept


def test_a_new_window_offers_the_unfinished_job_and_reopens_it_with_its_settings(
    qtbot, make_window, tiny_llama, prompts_csv
):
    from conftest import PROMPTS

    kept = _stopped_job(qtbot, make_window, tiny_llama, prompts_csv, pooling="mean")
    window = make_window(settings_file="fresh.ini")  # another launch, with none of the first one's settings
    wait_idle(qtbot, window)
    bar = window.unfinished_bar
    assert bar.isVisible() and len(bar.buttons) == 1
    said = bar.lines[0].text()
    assert f"prompts.csv</b> \u2014 {kept} of {len(PROMPTS)} rows done, last on " in said

    bar.buttons[0].click()  # one click: model, file, column and settings as they were
    qtbot.waitUntil(lambda: window.run_page.results.finished_count() == kept, timeout=30_000)
    wait_idle(qtbot, window)
    assert not bar.isVisible()
    assert window.model_panel.model() == str(tiny_llama)
    assert window.settings_panel.pooling_box.currentData() == "mean"
    assert window.settings_panel.max_tokens.value() == 20
    assert window.prompts_panel.table is not None and window.prompts_panel.table.column == "text"
    assert window.run_page.results.rowCount() == len(PROMPTS)
    assert f"{kept} of {len(PROMPTS)} rows are done" in window.run_page.status_label.text()
    fresh = []
    window.runner.partial_result.connect(fresh.append)
    outcome = run_to_end(qtbot, window)
    assert window.prompter.asked == []  # the user chose this job: Run continues it
    assert len(fresh) == len(PROMPTS) - kept and len(outcome.results) == len(PROMPTS)
    assert outcome.spec.settings.pooling == "mean"


def test_an_unfinished_job_whose_prompts_file_moved_or_changed_says_so(qtbot, make_window, tiny_llama, tmp_path):
    import pandas as pd
    from conftest import PROMPTS

    from gpi_desktop.core.job.job import kept_jobs

    moved, changed = tmp_path / "moved.csv", tmp_path / "changed.csv"
    pd.DataFrame({"text": PROMPTS}).to_csv(moved, index=False)
    pd.DataFrame({"text": PROMPTS + ["one more"]}).to_csv(changed, index=False)  # another job: its own journal
    _stopped_job(qtbot, make_window, tiny_llama, moved)
    _stopped_job(qtbot, make_window, tiny_llama, changed)
    moved.rename(tmp_path / "elsewhere.csv")
    pd.DataFrame({"text": PROMPTS[::-1]}).to_csv(changed, index=False)

    window = make_window(settings_file="fresh.ini")
    wait_idle(qtbot, window)
    text = " ".join(label.text() for label in window.unfinished_bar.findChildren(type(window.run_page.status_label)))
    assert f"is no longer at {moved}" in text
    assert "The prompts file has changed since" in text

    jobs = {j.spec.prompts_path.name: j for j in kept_jobs(window.runs_dir)}
    window.reopen_job(jobs["moved.csv"])
    assert "no longer at" in window.run_page.status_label.text()
    assert window.settings_panel.max_tokens.value() == 20 and window.model_panel.model() == str(tiny_llama)
    window.reopen_job(jobs["changed.csv"])
    qtbot.waitUntil(lambda: "has changed since" in window.run_page.status_label.text(), timeout=30_000)
    assert window.run_page.results.finished_count() == 0  # the old rows are not shown as the new file's

"""What the run page says is true: the model's figures, the table of the job's rows, the time left."""

from __future__ import annotations

from ui_fixtures import make_window, memory_keyring, wait_idle  # noqa: F401 - fixtures

from gpi_desktop.ui.main_window import STEP_MODEL

HUB_MODEL = "meta-llama/Llama-3.1-8B-Instruct"  # HF_HUB_OFFLINE=1 in the tests: its config cannot be read


def test_a_hub_models_width_is_not_known_yet_while_it_loads_and_gets_no_check_mark(qtbot, make_window,
                                                                                   tiny_llama):
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
        qtbot, make_window, tiny_llama, prompts_csv):
    from conftest import PROMPTS
    from test_ui_run import _stop_after_first_result, prepare

    from gpi_desktop.ui.table_models import COL_PROMPT, COL_ROW, COL_TEXT, WAITING

    first = make_window()
    prepare(qtbot, first, tiny_llama, prompts_csv, batch=1, max_new=20)
    _stop_after_first_result(qtbot, first)
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

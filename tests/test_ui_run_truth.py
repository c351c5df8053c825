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

"""The results on screen belong to the job that made them; no click throws a job away."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import PROMPTS
from window_helpers import MAX_NEW, prepare, run_to_end, wait_idle

from gpi_desktop.ui.main_window import STEP_EXPORT, STEP_RUN


def _two_column_csv(tmp_path, name="two.csv", rows=None):
    path = tmp_path / name
    pd.DataFrame({"text": PROMPTS[:rows], "other": [p.upper() for p in PROMPTS[:rows]]}).to_csv(path, index=False)
    return path


def _select(box, data):
    box.setCurrentIndex(box.findData(data))


def _assert_stale(qtbot, window, folder, *words):
    wait_idle(qtbot, window)
    changes = window.result_changes()
    assert changes, "the changed input was not noticed"
    said = window.run_page.stale_label.text()
    for word in words:
        assert word in said
    assert "They were made with" in said and window.run_page.stale_label.isVisibleTo(window.run_page)
    assert not window.run_page.status_label.isVisibleTo(window.run_page)  # no "Done: 8 texts" above stale rows
    assert not window.steps.item(STEP_RUN).text().endswith("\u2714")
    assert not window.steps.item(STEP_EXPORT).text().endswith("\u2714")
    assert not window.run_page.export_button.isEnabled()
    assert not window.export_page.export_button.isEnabled()
    assert "do not match the current inputs" in window.export_page.state_label.text()
    assert window.current_outcome() is None
    assert not window.export_to(folder)  # even when called directly, nothing stale is written
    assert not folder.exists()


def _assert_fresh(qtbot, window):
    wait_idle(qtbot, window)
    assert window.result_changes() == ()
    assert window.current_outcome() is window.outcome
    assert not window.run_page.stale_label.isVisibleTo(window.run_page)
    assert window.steps.item(STEP_RUN).text().endswith("\u2714")
    assert window.run_page.export_button.isEnabled() and window.export_page.export_button.isEnabled()
    assert "ready to export" in window.export_page.state_label.text()


def test_every_result_changing_input_makes_the_results_unexportable_until_it_is_changed_back(
    qtbot, make_window, tiny_llama, tiny_qwen, tmp_path
):
    window = make_window({"Export finished": "Close"})
    csv = _two_column_csv(tmp_path)
    fewer = _two_column_csv(tmp_path, "fewer.csv", rows=3)
    prepare(qtbot, window, tiny_llama, csv)
    _select(window.settings_panel.pooling_box, "max")
    run_to_end(qtbot, window)
    folder = tmp_path / "never"
    sp = window.settings_panel
    _assert_fresh(qtbot, window)

    def toggle(change, back, *words):
        change()
        _assert_stale(qtbot, window, folder, *words)
        back()
        _assert_fresh(qtbot, window)

    toggle(
        lambda: window.prompts_panel.load_file(fewer),
        lambda: window.prompts_panel.load_file(csv),
        "the prompts file",
        "the number of rows (8 \u2192 3)",
        "two.csv",
    )
    toggle(
        lambda: window.prompts_panel.select_column("other"),
        lambda: window.prompts_panel.select_column("text"),
        "the prompt column",
    )
    toggle(
        lambda: window.model_panel.set_model(str(tiny_qwen)),
        lambda: window.model_panel.set_model(str(tiny_llama)),
        "the model",
    )
    toggle(lambda: _select(sp.dtype_box, "float32"), lambda: _select(sp.dtype_box, "auto"), "precision")
    toggle(
        lambda: _select(sp.task_box, "repeat"),
        lambda: _select(sp.task_box, "create"),
        "the task (create \u2192 repeat)",
    )
    toggle(
        lambda: (_select(sp.task_box, "custom"), sp.instruction_edit.setPlainText("Summarise.")),
        lambda: _select(sp.task_box, "create"),
        "the task (create \u2192 your own instruction)",
    )
    toggle(lambda: _select(sp.pooling_box, "last"), lambda: _select(sp.pooling_box, "max"), "pooling (max \u2192 last)")
    toggle(
        lambda: sp.max_tokens.setValue(MAX_NEW + 1),
        lambda: sp.max_tokens.setValue(MAX_NEW),
        f"the maximum new tokens ({MAX_NEW} \u2192 {MAX_NEW + 1})",
    )
    toggle(
        lambda: _select(sp.template_box, "model-card"), lambda: _select(sp.template_box, "gpi_pack"), "chat formatting"
    )
    toggle(
        lambda: sp.template_options.setPlainText("enable_thinking=false"),
        lambda: sp.template_options.setPlainText(""),
        "the chat template options",
    )
    toggle(
        lambda: sp.generation_options.setPlainText("repetition_penalty=1.2"),
        lambda: sp.generation_options.setPlainText(""),
        "the generation options",
    )
    toggle(lambda: _select(sp.quantization_box, "4bit"), lambda: _select(sp.quantization_box, None), "quantization")
    toggle(
        lambda: sp.generation_options.setPlainText("not an option line"), lambda: sp.generation_options.setPlainText("")
    )  # a half-typed input is not the inputs of the results

    # Changed back: the export is exactly what the window showed.
    shown = window.export_page.state_label.text()
    good = tmp_path / "export"
    with qtbot.waitSignal(window.export_finished, timeout=60_000):
        assert window.export_to(good)
    manifest = json.loads((good / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["input"]["file"] == "two.csv" and manifest["input"]["column"] == "text"
    assert manifest["input"]["rows"] == len(PROMPTS)
    assert manifest["settings"]["pooling"] == "max" and manifest["settings"]["max_new_tokens"] == MAX_NEW
    assert manifest["settings"]["task"] == "create" and manifest["settings"]["template"] == "gpi_pack"
    assert manifest["model"]["model_id"] in shown and "pooling max" in shown and "two.csv" in shown
    assert "pooling max" in window.run_page.summary_label.text()


def test_a_run_with_new_inputs_replaces_the_stale_results(qtbot, make_window, tiny_llama, prompts_csv):
    window = make_window()
    prepare(qtbot, window, tiny_llama, prompts_csv)
    run_to_end(qtbot, window)
    _select(window.settings_panel.pooling_box, "mean")
    wait_idle(qtbot, window)
    assert window.current_outcome() is None
    outcome = run_to_end(qtbot, window)
    assert outcome.spec.settings.pooling == "mean"
    assert window.current_outcome() is outcome
    assert not window.run_page.stale_label.isVisibleTo(window.run_page)


def test_run_after_a_finished_run_asks_and_use_these_results_keeps_them(qtbot, make_window, tiny_llama, prompts_csv):
    window = make_window({"already finished": "Use these results"})
    prepare(qtbot, window, tiny_llama, prompts_csv)
    outcome = run_to_end(qtbot, window)
    with qtbot.waitSignal(window.run_failed, timeout=30_000):
        window.run_page.run_button.click()
    asked = window.prompter.asked[-1]
    assert asked.title == "This job is already finished"
    assert asked.choices[:2] == ("Use these results", "Start again") and asked.default_choice == "Use these results"
    assert "Continue where it stopped" not in asked.choices
    assert window.outcome is outcome and window.current_outcome() is outcome  # nothing was thrown away
    assert window.run_page.results.rowCount() == len(PROMPTS)


def test_run_after_an_exported_run_still_asks_before_starting_again(
    qtbot, make_window, tiny_llama, prompts_csv, tmp_path
):
    window = make_window({"Export finished": "Close", "already finished": "Start again"})
    prepare(qtbot, window, tiny_llama, prompts_csv)
    first = run_to_end(qtbot, window)
    with qtbot.waitSignal(window.export_finished, timeout=60_000):
        window.export_to(tmp_path / "out")  # the export removes the journal: only the window knows the job
    second = run_to_end(qtbot, window)
    assert [a.title for a in window.prompter.asked][-1] == "This job is already finished"
    assert second is not first and len(second.results) == len(PROMPTS)


def test_a_new_window_offers_use_these_results_for_a_finished_journal(qtbot, make_window, tiny_llama, prompts_csv):
    first = make_window()
    prepare(qtbot, first, tiny_llama, prompts_csv)
    outcome = run_to_end(qtbot, first)
    second = make_window({"already finished": "Use these results"}, settings_file="second.ini")
    prepare(qtbot, second, tiny_llama, prompts_csv)
    again = run_to_end(qtbot, second)  # read back from the journal, nothing generated
    assert second.prompter.asked[-1].title == "This job is already finished"
    assert [r.text for r in again.results] == [r.text for r in outcome.results]


def test_enter_in_a_question_takes_the_default_answer(qtbot):
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    from gpi_desktop.ui.shared.prompter import Prompter

    def press_enter():
        box = next(w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible())
        qtbot.keyClick(box, Qt.Key.Key_Return)

    QTimer.singleShot(200, press_enter)
    assert (
        Prompter().ask(None, "Stop and close?", "A run is in progress.", ["Stop and close", "Keep working"], default=1)
        == 1
    )


def test_run_is_disabled_with_the_reason_beside_it_for_an_empty_own_instruction(
    qtbot, make_window, tiny_llama, prompts_csv
):
    window = make_window()
    prepare(qtbot, window, tiny_llama, prompts_csv)
    _select(window.settings_panel.task_box, "custom")
    window.settings_panel.instruction_edit.setPlainText("   ")
    assert not window.run_page.run_button.isEnabled()
    assert window.run_page.blocker_label.isVisibleTo(window.run_page)
    assert "The task is empty" in window.run_page.blocker_label.text()
    window.settings_panel.instruction_edit.setPlainText("Summarise the text.")
    assert window.run_page.run_button.isEnabled()
    assert not window.run_page.blocker_label.isVisibleTo(window.run_page)


@pytest.mark.parametrize("line", ["repetition_penalty", "max_new_tokens=5"])
def test_run_is_disabled_for_an_option_line_it_could_not_use(qtbot, make_window, tiny_llama, prompts_csv, line):
    window = make_window()
    prepare(qtbot, window, tiny_llama, prompts_csv)
    window.settings_panel.generation_options.setPlainText(line)
    assert not window.run_page.run_button.isEnabled()
    assert window.run_page.blocker_label.text().startswith("Run is not possible yet:")


def test_a_generation_option_the_model_would_not_accept_is_refused_by_run_before_the_model_loads(
    qtbot, make_window, tiny_llama, prompts_csv, monkeypatch
):
    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded although the run should have been refused before")

    window = make_window()
    prepare(qtbot, window, tiny_llama, prompts_csv)
    window.settings_panel.generation_options.setPlainText("repetition_penalty=-1")
    monkeypatch.setattr("gpi_desktop.core.model.models.load_model", must_not_load)
    with qtbot.waitSignal(window.run_failed, timeout=120_000) as blocker:
        window.run_page.run_button.click()
    assert blocker.args[0].startswith(
        "The generation option repetition_penalty=-1 cannot be used: repetition_penalty takes a number above 0"
    )
    assert not any(window.runs_dir.rglob("journal.json"))  # nothing written for the refused run

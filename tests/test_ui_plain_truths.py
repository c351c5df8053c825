"""What the window says about its settings and texts is true (issue 25, points 6, 7 and 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings
from gpi_desktop.ui.guide import guide_html
from gpi_desktop.ui.shared.prompter import ScriptedPrompter
from gpi_desktop.ui.steps.run_step import RunPage
from gpi_desktop.ui.steps.settings_step import CHANGED_MARK, HELP, TIPS, SettingsPanel


@pytest.fixture
def panel(qtbot):
    p = SettingsPanel()
    qtbot.addWidget(p)
    return p


def test_the_batch_size_hint_and_the_guide_say_other_rows_change_the_numbers_and_offer_gpi_packs_procedure(panel):
    assert "does not change" not in HELP["batch_size"] and "never changes" not in TIPS["batch_size"]
    assert "change the numbers slightly" in HELP["batch_size"] and "bfloat16" in TIPS["batch_size"]
    guide = " ".join(guide_html(Path("runs")).split())
    assert "change the numbers slightly" in guide and "One prompt at a time" in guide

    assert panel.values()[0].strategy == "batched" and panel.batch_spin.isEnabled()
    panel.one_at_a_time.setChecked(True)  # one click
    assert panel.values()[0].strategy == "one-at-a-time" and not panel.batch_spin.isEnabled()
    panel.set_values(RunSettings(), ExportSettings())
    assert not panel.one_at_a_time.isChecked()


def test_settings_that_are_not_gpi_packs_defaults_are_marked(panel):
    label = panel._labels["max_new_tokens"][0]
    assert CHANGED_MARK not in label.text()
    panel.set_values(RunSettings(max_new_tokens=20), ExportSettings(prefix="h_"))  # carried from the last session
    assert label.text() == f"Maximum new tokens {CHANGED_MARK}" and "not the default" in label.toolTip()
    assert CHANGED_MARK in panel._labels["prefix"][0].text()
    assert CHANGED_MARK not in panel._labels["pooling"][0].text()
    panel.restore_defaults()
    assert not any(CHANGED_MARK in lab.text() for lab, _ in panel._labels.values())


def test_greyed_settings_say_why(panel):
    panel.show()
    panel.set_locked(True)
    assert not panel.body.isEnabled() and panel.lock_note.isVisible()
    assert "while a run or an export works" in panel.lock_note.text()
    panel.set_locked(False)
    assert panel.body.isEnabled() and not panel.lock_note.isVisible()


def test_where_the_texts_are_shown_the_window_says_why_they_start_with_assistant_and_offers_the_model_card_style(
    qtbot, make_window
):
    window = make_window()
    note = window.run_page.template_note
    assert not note.isHidden() and "\u201cassistant\u201d" in note.text() and 'href="model-card"' in note.text()
    assert "differ from gpi_pack" in note.text()
    note.linkActivated.emit("model-card")  # one click on the offer
    assert window.settings_panel.template_box.currentData() == "model-card"
    assert "start with the answer" in note.text() and 'href="gpi_pack"' in note.text()


def test_without_a_prompts_file_step_5_counts_no_prompts(qtbot, make_window):
    page = RunPage()
    qtbot.addWidget(page)
    assert page.progress_bar.text() == "No prompts yet"
    window = make_window()
    assert window.prompts_panel.table is None
    assert window.run_page.progress_bar.text() == "No prompts yet"


def test_export_finished_is_news_with_an_information_icon():
    asked = ScriptedPrompter()
    asked.ask(None, "Export finished", "Exported 3 texts.", ["Open the folder", "Close"], information=True)
    assert asked.asked[0].icon == QMessageBox.Icon.Information
    asked.ask(None, "Stop the run?", "...", ["Stop", "Keep running"])
    assert asked.asked[1].icon == QMessageBox.Icon.Question

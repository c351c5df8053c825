"""The window's part of issue 13: the template date among the advanced settings, and inspecting an export."""

from __future__ import annotations

import json

from window_helpers import prepare, run_to_end

from gpi_desktop.core.vocabulary.settings import RunSettings


def test_the_template_date_field_sets_the_jobs_date_and_a_bad_one_is_refused(
    qtbot, make_window, tiny_dated, prompts_csv, tmp_path
):
    window = make_window({"Export finished": "Close"})
    panel = window.settings_panel
    assert panel.values()[0].template_date is None  # empty: the day the job is first run
    prepare(qtbot, window, tiny_dated, prompts_csv)
    panel.advanced.setChecked(True)
    panel.template_date_edit.setText("26.07.2024")
    window.start_run()
    assert "YYYY-MM-DD" in window.run_page.status_label.text()
    panel.template_date_edit.setText("2024-07-26")
    run_to_end(qtbot, window)
    assert window.outcome.template.date == "2024-07-26" and window.outcome.template.date_used
    assert "Template date:</b> 2024-07-26" in window.export_page.state_label.text()
    with qtbot.waitSignal(window.export_finished, timeout=60_000):
        assert window.export_to(tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["prompt_template"]["date"] == "2024-07-26"

    window.inspect_folder(tmp_path / "out")
    qtbot.waitUntil(lambda: window.export_page.inspect_button.isEnabled(), timeout=60_000)
    assert not window.export_page.inspect_text.isHidden()
    text = window.export_page.inspect_text.toPlainText()
    assert "Template date: 2024-07-26 (given with the job)" in text
    assert (
        "Checksums: all 11 files match the manifest, so they are unchanged since the export was written (a check "
        "against damage, not against deliberate edits;"
    ) in text
    assert window.export_page.inspect_label.text() == "Every file matches its checksum."


def test_inspecting_a_changed_export_or_a_non_export_is_said_in_the_window(qtbot, make_window, tmp_path):
    window = make_window()
    window.inspect_folder(tmp_path)
    qtbot.waitUntil(lambda: window.export_page.inspect_button.isEnabled(), timeout=30_000)
    assert "not a finished GPI Desktop export" in window.export_page.inspect_label.text()
    assert window.export_page.inspect_text.isHidden()


def test_the_template_date_is_not_remembered_between_launches(qtbot, make_window):
    from gpi_desktop.ui.shared import prefs

    window = make_window()
    prefs.save_settings(window.qsettings, RunSettings(template_date="2024-07-26"), window.settings_panel.values()[1])
    assert prefs.load_settings(window.qsettings)[0].template_date is None
    panel = window.settings_panel
    panel.set_values(RunSettings(template_date="2024-07-26"), panel.values()[1])
    assert panel.advanced.isChecked() and panel.values()[0].template_date == "2024-07-26"


def test_the_inspect_button_asks_for_a_folder_and_inspects_the_one_chosen(qtbot, make_window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    asked = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args: asked.append(args) or str(tmp_path))
    window = make_window()
    window.export_page.inspect_button.click()
    qtbot.waitUntil(lambda: window.export_page.inspect_button.isEnabled(), timeout=30_000)
    assert asked and "not a finished GPI Desktop export" in window.export_page.inspect_label.text()

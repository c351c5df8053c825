"""Step 4 and persistence: typed settings from the form, tooltips everywhere, remembered between launches."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QComboBox, QLineEdit, QPlainTextEdit, QSpinBox, QWidget
from window_helpers import wait_idle

from gpi_desktop.core.vocabulary.errors import SettingsError
from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings
from gpi_desktop.ui.shared import prefs
from gpi_desktop.ui.shared.resources import demo_model_path
from gpi_desktop.ui.steps.export_flow import folder_has_files, gpi_pack_snippet
from gpi_desktop.ui.steps.settings_step import SettingsPanel


@pytest.fixture
def panel(qtbot):
    p = SettingsPanel()
    qtbot.addWidget(p)
    return p


def test_the_form_starts_at_gpi_packs_defaults(panel):
    run, export = panel.values()
    assert run == RunSettings()
    assert export == ExportSettings()
    assert panel.batch_spin.text() == "auto"


def test_every_setting_explains_itself_in_a_tooltip(panel):
    kinds = (QComboBox, QSpinBox, QLineEdit, QPlainTextEdit)
    widgets = [w for w in panel.findChildren(QWidget) if isinstance(w, kinds)]
    inputs = [w for w in widgets if not isinstance(w.parent(), (QComboBox, QSpinBox))]  # skip inner line edits
    assert len(inputs) >= 11
    assert all(w.toolTip().strip() for w in inputs), [type(w).__name__ for w in inputs if not w.toolTip()]
    assert "Default: last" in panel.pooling_box.toolTip()
    assert "Default: 1000" in panel.max_tokens.toolTip()
    assert "gpi_pack" in panel.template_box.toolTip()


def test_the_form_gives_typed_settings(panel):
    panel.task_box.setCurrentIndex(panel.task_box.findData("custom"))
    panel.instruction_edit.setPlainText("  Summarise the speech in one sentence.  ")
    panel.pooling_box.setCurrentIndex(panel.pooling_box.findData("mean"))
    panel.max_tokens.setValue(250)
    panel.batch_spin.setValue(8)
    panel.template_box.setCurrentIndex(panel.template_box.findData("model-card"))
    panel.prefix_edit.setText("vec_")
    panel.save_name_edit.setText("texts")
    panel.generation_options.setPlainText("repetition_penalty=1.1\n\nnum_beams=1")
    run, export = panel.values(model="some/model")
    assert run.task == "Summarise the speech in one sentence."
    assert (run.pooling, run.max_new_tokens, run.batch_size, run.template) == ("mean", 250, 8, "model-card")
    assert run.generation_options == {"repetition_penalty": 1.1, "num_beams": 1}
    assert run.model == "some/model"
    assert export == ExportSettings(prefix="vec_", save_name="texts")
    assert not panel.instruction_edit.isHidden()


def test_a_bad_option_line_is_refused_in_plain_words(panel):
    panel.generation_options.setPlainText("repetition_penalty 1.1")
    with pytest.raises(SettingsError, match="KEY=VALUE"):
        panel.values()


def test_restore_defaults_resets_every_setting(panel):
    panel.pooling_box.setCurrentIndex(2)
    panel.max_tokens.setValue(5)
    panel.prefix_edit.setText("x_")
    panel.restore_defaults()
    assert panel.values() == (RunSettings(), ExportSettings())


def test_settings_survive_a_round_trip_through_qsettings(tmp_path):
    qs = QSettings(str(tmp_path / "p.ini"), QSettings.Format.IniFormat)
    run = RunSettings(
        model="/models/llama",
        task="Repeat loudly.",
        pooling="max",
        max_new_tokens=64,
        dtype="float32",
        device="cpu",
        template="model-card",
        batch_size=4,
        quantization="4bit",
        generation_options={"repetition_penalty": 1.2},
    )
    export = ExportSettings(prefix="h_", save_name="out")
    prefs.save_settings(qs, run, export)
    qs.sync()
    again = QSettings(str(tmp_path / "p.ini"), QSettings.Format.IniFormat)
    assert prefs.load_settings(again) == (run, export)


def test_allowing_pickle_weights_is_not_remembered_between_launches(tmp_path):
    qs = QSettings(str(tmp_path / "p.ini"), QSettings.Format.IniFormat)
    prefs.save_settings(qs, RunSettings(allow_pickle_weights=True), ExportSettings())
    qs.sync()
    again = QSettings(str(tmp_path / "p.ini"), QSettings.Format.IniFormat)
    assert prefs.load_settings(again)[0].allow_pickle_weights is False


def test_nonsense_in_the_preferences_falls_back_to_defaults(tmp_path):
    qs = QSettings(str(tmp_path / "p.ini"), QSettings.Format.IniFormat)
    qs.setValue("run/pooling", "median")
    qs.setValue("run/max_new_tokens", "lots")
    qs.setValue("run/batch_size", "-3")
    qs.setValue("run/generation_options", "temperature=0.7")
    qs.setValue("export/prefix", "a/b")
    run, export = prefs.load_settings(qs)
    assert run == RunSettings() and export == ExportSettings()


def test_the_window_remembers_settings_and_folders_between_launches(qtbot, make_window, prompts_csv):
    first = make_window()
    first.model_panel.use_demo_model()
    first.settings_panel.pooling_box.setCurrentIndex(first.settings_panel.pooling_box.findData("mean"))
    first.settings_panel.max_tokens.setValue(77)
    first.prompts_panel.load_file(prompts_csv)
    wait_idle(qtbot, first)
    first.close()

    second = make_window()
    run, _ = second.settings_panel.values()
    assert second.model_panel.model() == str(demo_model_path())
    assert run.pooling == "mean" and run.max_new_tokens == 77
    assert prefs.last_folder(second.qsettings, "prompts") == str(prompts_csv.parent)
    wait_idle(qtbot, second)


def test_the_snippet_loads_the_export_with_gpi_pack(tmp_path):
    code = gpi_pack_snippet(tmp_path / "out", ExportSettings(prefix="vec_", save_name="texts"))
    lines = code.splitlines()
    assert len(lines) == 3
    assert lines[0] == "import pandas as pd, gpi_pack.TarNet as gpi"
    assert str(tmp_path / "out" / "texts.pkl") in lines[1]
    assert f"gpi.load_hiddens(r\"{tmp_path / 'out' / 'hidden'}\", texts.index.tolist(), prefix='vec_')" in lines[2]
    compile(code, "snippet", "exec")


def test_only_real_files_make_a_folder_count_as_not_empty(tmp_path):
    assert not folder_has_files(tmp_path / "missing")
    assert not folder_has_files(tmp_path)
    (tmp_path / ".DS_Store").write_text("")
    assert not folder_has_files(tmp_path)
    (tmp_path / "data.csv").write_text("x")
    assert folder_has_files(tmp_path)


def test_the_window_has_one_cluster_menu_and_a_help_menu(qtbot, make_window):
    window = make_window()
    titles = [action.text() for action in window.menuBar().actions()]
    assert titles == ["&Cluster", "&Help"]
    wait_idle(qtbot, window)


@pytest.mark.parametrize("frozen", [True, False])
def test_the_quantization_tooltip_says_whether_this_build_can_and_how_to_get_one_that_can(qtbot, monkeypatch, frozen):
    import sys

    from gpi_desktop.ui.steps import settings_step

    monkeypatch.setattr(sys, "frozen", frozen, raising=False)
    monkeypatch.setattr(settings_step, "quantization_available", lambda: False)
    missing = SettingsPanel()
    qtbot.addWidget(missing)
    tip = missing.quantization_box.toolTip()
    assert "This build cannot" in tip and "bitsandbytes" in tip and not missing.quantization_box.isEnabled()
    if frozen:  # an installed program cannot take a pip package: say which install can
        assert "pip install" not in tip and "Python install of GPI Desktop" in tip
    else:
        assert 'pip install "gpi-desktop[quantization]"' in tip
    monkeypatch.setattr(settings_step, "quantization_available", lambda: True)
    able = SettingsPanel()
    qtbot.addWidget(able)
    assert "This build can do it" in able.quantization_box.toolTip() and able.quantization_box.isEnabled()
    assert "pip install" not in able.quantization_box.toolTip()


def test_model_options_are_named_for_a_researcher_with_the_technical_word_in_the_tooltip(panel):
    from PySide6.QtWidgets import QLabel

    labels = {label.text(): label for label in panel.findChildren(QLabel)}
    assert "Model options" in labels and "Chat template options" not in labels
    assert "enable_thinking" not in panel.template_options.placeholderText()
    assert "enable_thinking=false" in panel.template_options.toolTip()
    assert "chat template" in labels["Model options"].toolTip()

"""Step 2: the model field and what the run will use (device, hidden width, memory), checked off the main thread."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from window_helpers import wait_idle

from gpi_desktop.ui.shared.resources import demo_model_path
from gpi_desktop.ui.shared.tasks import BackgroundCalls
from gpi_desktop.ui.steps.model_step import MemoryInputs, ModelPanel


@pytest.fixture
def panel(qtbot, memory_keyring):
    calls = BackgroundCalls()
    p = ModelPanel(calls)
    qtbot.addWidget(p)
    return p


def settle(qtbot, panel):
    qtbot.waitUntil(lambda: not panel.is_checking(), timeout=60_000)


def test_the_demo_model_is_described_with_its_width_device_and_memory(qtbot, panel):
    panel.use_demo_model()
    settle(qtbot, panel)
    text = panel.target_label.text()
    assert "Vector length: 64 numbers per text" in text and "Hidden width" not in text
    assert "hidden size" in panel.target_label.toolTip()  # the technical word, for who looks for it
    assert "Will run on:" in text
    assert "Memory: The model needs about" in text and "it fits" in text
    assert panel.last_target is not None and panel.last_target.hidden_size == 64
    assert not panel.demo_note.isHidden()
    assert "random" in panel.demo_note.text() and "gibberish" in panel.demo_note.text()
    assert panel.page_link.isHidden()


def test_a_hub_id_shows_its_page_and_an_offline_check_says_why_it_could_not_read_it(qtbot, panel, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    panel.set_model("someone/some-model")
    settle(qtbot, panel)
    assert not panel.page_link.isHidden()
    assert "https://huggingface.co/someone/some-model" in panel.page_link.text()
    assert panel.demo_note.isHidden()
    text = panel.target_label.text()
    assert "Vector length: not known yet." in text
    assert "someone/some-model" in text  # the hub's refusal, in plain words, names the model


def test_the_check_never_imports_torch_on_the_main_thread(qtbot):
    code = (
        "import sys; from PySide6.QtWidgets import QApplication; app = QApplication([]);"
        "from gpi_desktop.ui.main_window import MainWindow; print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert out.stdout.strip() == "False", out.stderr


def test_changing_the_settings_that_decide_memory_checks_again(qtbot, panel):
    panel.use_demo_model()
    settle(qtbot, panel)
    first = panel.target_label.text()
    panel.set_memory_inputs(MemoryInputs(batch_size=64, max_new_tokens=4000))
    assert panel.is_checking()
    settle(qtbot, panel)
    assert "64 prompts at a time" in panel.target_label.text()
    assert panel.target_label.text() != first


def test_the_window_keeps_the_check_in_step_with_the_settings_step(qtbot, make_window):
    window = make_window()
    window.model_panel.set_model(str(demo_model_path()))
    wait_idle(qtbot, window)
    window.settings_panel.batch_spin.setValue(16)
    assert window.model_panel.is_checking()
    wait_idle(qtbot, window)
    assert "16 prompts at a time" in window.model_panel.target_label.text()
    assert "64 numbers per vector" in window.run_page.summary_label.text()


def test_a_folder_without_a_model_is_an_error_not_a_warning_beside_the_cpu(qtbot, panel, tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    panel.set_model(str(tmp_path))
    settle(qtbot, panel)
    text = panel.target_label.text()
    assert "Will run on" not in text and "No NVIDIA GPU" not in text
    assert str(tmp_path.name) in text or "config.json" in text
    assert "#b00020" in panel.target_label.styleSheet()

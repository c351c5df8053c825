"""Step 7 in the window: the demo model's export of the sample prompts reaches an estimate, with its report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from window_helpers import prepare, run_to_end

from gpi_desktop.ui.main_window import STEP_ESTIMATE
from gpi_desktop.ui.shared.resources import demo_model_path, sample_prompts_path

SHOTS = os.environ.get("GPI_SCREENSHOTS")  # a folder: the test saves the step's screenshot there


# Small networks train several times faster on one thread than on a shared, loaded machine's two.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_demo_export_reaches_an_estimate_with_its_report(qtbot, make_window, tmp_path):
    window = make_window({"Export finished": "Close"})
    prepare(qtbot, window, demo_model_path(), sample_prompts_path(), max_new=4)
    run_to_end(qtbot, window)
    with qtbot.waitSignal(window.export_finished, timeout=60_000):
        assert window.export_to(tmp_path / "export")
    step = window.estimate_step
    qtbot.waitUntil(lambda: step.preview is not None, timeout=60_000)
    assert step.preview.path == sample_prompts_path()  # the prompts file the export was made from
    assert step.treatment_combo.currentText() == "treatment" and step.outcome_combo.currentText() == "outcome"
    assert step.treated_combo.currentText() == "1" and step.estimate_button.isEnabled()

    step.treatment_combo.setCurrentText("party")  # two values that are not 0/1: the window asks which is treated
    assert step.treated_combo.currentText() == "(choose)" and not step.estimate_button.isEnabled()
    step.treatment_combo.setCurrentText("treatment")
    step.epochs_spin.setValue(10_000)  # Stop: the first epoch's progress is shown, then nothing is written

    def stop(_progress):
        step.cancel()

    window.runner.progress.connect(stop)
    assert step.estimate_to(tmp_path / "stopped")
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=120_000)
    window.runner.progress.disconnect(stop)
    assert step.status_label.text() == "Stopped; no report was written."
    assert not (tmp_path / "stopped" / "estimate.json").exists() and step.estimate_button.isEnabled()
    step.epochs_spin.setValue(3)
    window.go_to(STEP_ESTIMATE)
    with qtbot.waitSignal(step.estimated, timeout=300_000) as done:
        assert step.estimate_to(tmp_path / "report")
        assert step.busy and not step.estimate_button.isEnabled()
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=10_000)
    result = done.args[0]
    record = json.loads((tmp_path / "report" / "estimate.json").read_text(encoding="utf-8"))
    assert record["n_used"] == 10 and record["ate"] == result.estimate.summary.ate
    assert record["data"]["file"] == str(sample_prompts_path())
    assert "Effect (ATE)" in step.results.headline.text() and not step.results.isHidden()
    assert "10 rows used (5 treated, 5 control)" in step.results.rows.text()
    assert "fewer than about 50 rows per group" in step.results.warnings.text()
    assert len(step.results.canvases) == 2
    if SHOTS:
        _screenshots(qtbot, window, Path(SHOTS))


def test_a_gpi_pack_folder_without_data_says_to_choose_the_data_file(qtbot, make_window, tmp_path):
    import torch

    (tmp_path / "hidden").mkdir()
    for k in range(3):
        torch.save(torch.zeros(1, 4), tmp_path / "hidden" / f"hidden_{k}.pt")
    window = make_window()
    step = window.estimate_step
    step.use_export(tmp_path / "hidden")
    qtbot.waitUntil(lambda: "Data" in step.status_label.text(), timeout=60_000)
    assert "choose the data file (CSV, TSV or Excel, one row per vector) under Data" in step.status_label.text()
    assert not step.estimate_button.isEnabled()


def _screenshots(qtbot, window, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    window.resize(1366, 768)
    window.go_to(STEP_ESTIMATE)
    qtbot.wait(200)
    window.grab().save(str(folder / "8-estimate.png"))

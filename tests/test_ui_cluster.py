"""The window's cluster dialogs: a job folder written from the fields, and shard folders merged in a worker."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
from conftest import PROMPTS
from PySide6.QtCore import Qt

from gpi_desktop.cli import main
from gpi_desktop.core.cluster.shards import load_job_file
from gpi_desktop.core.job.job import JobSpec
from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings
from gpi_desktop.ui.cluster.dialogs import MergeShardsDialog, PrepareClusterDialog


@pytest.fixture
def spec(tiny_llama, prompts_csv):
    # Batch size 1: waves of 4 prompts (shards are cut by whole waves), so each of two shards has rows.
    return JobSpec(
        prompts_csv, "text", RunSettings(model=str(tiny_llama), max_new_tokens=8, batch_size=1), ExportSettings()
    )


def test_prepare_dialog_writes_the_job_folder_from_its_fields(qtbot, spec, tmp_path):
    dialog = PrepareClusterDialog(spec, len(PROMPTS))
    qtbot.addWidget(dialog)
    dialog.tasks.setValue(2)  # 8 prompts in waves of 4: two tasks get prompts
    dialog.gpus.setValue(2)
    dialog.time.setText("12:00:00")
    dialog.memory.setText("96G")
    dialog.cache.setText("/scratch/me/hf")
    dialog.partition.setText("gpu")
    dialog.qos.setText("long")
    dialog.gpu_type.setText("a100")
    dialog.throttle.setValue(2)
    dialog.folder.setText(str(tmp_path / "job"))
    with qtbot.waitSignal(dialog.written, timeout=30_000):  # written in the worker (pinning may use the network)
        qtbot.mouseClick(dialog.write_button, Qt.MouseButton.LeftButton)

    assert not dialog.error.isVisible() or not dialog.error.text()
    job = tmp_path / "job"
    script = (job / "run.sbatch").read_text()
    for line in (
        "#SBATCH --array=1-2%2",
        "#SBATCH --gres=gpu:a100:2",
        "#SBATCH --qos=long",
        "#SBATCH --time=12:00:00",
        "#SBATCH --mem=96G",
        "#SBATCH --partition=gpu",
        'export HF_HOME="/scratch/me/hf"',
    ):
        assert line in script
    assert subprocess.run(["bash", "-n", str(job / "run.sbatch")]).returncode == 0
    loaded = load_job_file(job / "job.json")
    assert loaded.shards == 2 and loaded.spec.settings.max_new_tokens == 8
    assert (job / "input" / "prompts.csv").read_bytes() == spec.prompts_path.read_bytes()
    # The plain instructions are shown in the dialog: submit, check, merge back.
    shown = dialog.instructions.toPlainText()
    assert loaded.spec.settings.device == "cuda"  # a GPU job never silently runs on the CPU
    assert "sbatch run.sbatch" in shown and "squeue" in shown and "Merge cluster results" in shown
    assert dialog.open_button.isEnabled()


def test_prepare_dialog_shows_a_bad_field_and_writes_nothing(qtbot, spec, tmp_path):
    dialog = PrepareClusterDialog(spec, len(PROMPTS))
    qtbot.addWidget(dialog)
    dialog.time.setText("eight hours")
    dialog.folder.setText(str(tmp_path / "job"))
    assert dialog.write() is False
    assert "time limit" in dialog.error.text()
    assert not (tmp_path / "job").exists()


def test_prepare_dialog_warns_about_more_tasks_than_slurms_default_array_limit(qtbot, spec):
    dialog = PrepareClusterDialog(spec, 10_000)  # 2,500 waves of 4: 1,500 tasks all get prompts
    qtbot.addWidget(dialog)
    assert dialog.warning.isHidden()
    dialog.tasks.setValue(1500)
    assert not dialog.warning.isHidden() and "MaxArraySize" in dialog.warning.text()


def test_prepare_dialog_refuses_a_folder_that_is_not_empty(qtbot, spec, tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "notes.txt").write_text("mine")
    dialog = PrepareClusterDialog(spec, len(PROMPTS))
    qtbot.addWidget(dialog)
    dialog.folder.setText(str(tmp_path / "job"))
    assert dialog.write() is False
    assert "not empty" in dialog.error.text()
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["notes.txt"]


@pytest.fixture
def finished_job(spec, tmp_path):
    """A job folder whose two shards ran (in this process, as the cluster's tasks would)."""
    from gpi_desktop.core.cluster.sbatch import ClusterSettings, write_job_folder

    job = write_job_folder(tmp_path / "job", spec, ClusterSettings(shards=2, gpus_per_task=0)).folder
    for i in (1, 2):
        assert (
            main(
                [
                    "run",
                    "--job",
                    str(job / "job.json"),
                    "--shard",
                    f"{i}/2",
                    "--out",
                    str(job / "shards" / str(i)),
                    "--quiet",
                ]
            )
            == 0
        )
    return job


@pytest.fixture
def merge_dialog(qtbot):
    dialog = MergeShardsDialog()
    qtbot.addWidget(dialog)
    yield dialog
    qtbot.waitUntil(lambda: not dialog.is_busy(), timeout=60_000)
    dialog.close()  # ends its worker thread
    assert not dialog.runner._thread.isRunning()


def test_merge_dialog_merges_a_job_folder_into_one_export(qtbot, merge_dialog, finished_job, tmp_path):
    dialog = merge_dialog
    dialog.shards.setText(str(finished_job))
    dialog.out.setText(str(tmp_path / "export"))
    with qtbot.waitSignal(dialog.merged, timeout=60_000):
        qtbot.mouseClick(dialog.merge_button, Qt.MouseButton.LeftButton)
    texts = pd.read_pickle(tmp_path / "export" / "generated_texts.pkl")
    assert texts["P"].tolist() == PROMPTS
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["sharded"]["shards"] == 2 and manifest["counts"]["prompts"] == len(PROMPTS)
    assert "Merged 8" in dialog.status.text()
    qtbot.waitUntil(lambda: dialog.merge_button.isEnabled())


def test_merge_dialog_says_which_shard_is_missing(qtbot, merge_dialog, finished_job, tmp_path):
    import shutil

    shutil.rmtree(finished_job / "shards" / "2")
    dialog = merge_dialog
    dialog.shards.setText(str(finished_job))
    dialog.out.setText(str(tmp_path / "export"))
    with qtbot.waitSignal(dialog.runner.failed, timeout=60_000):
        dialog.merge()
    assert "missing" in dialog.status.text() and "shard 2 of 2" in dialog.status.text()
    assert not (tmp_path / "export").exists()
    qtbot.waitUntil(lambda: dialog.merge_button.isEnabled())


def test_main_window_cluster_menu_opens_prepare_only_for_a_ready_job(make_window):
    from gpi_desktop.ui.cluster.dialogs import main_window_job

    window = make_window()
    assert [a.text() for a in window.cluster_menu.actions()] == ["Prepare for a cluster…", "Merge cluster results…"]
    assert "prompts" in main_window_job(window).lower()  # no prompts file yet: the window's own reason


def test_merge_dialog_given_a_job_folder_without_results_speaks_of_its_result_folders(
    qtbot, merge_dialog, spec, tmp_path
):
    from gpi_desktop.core.cluster.sbatch import ClusterSettings, write_job_folder

    job = write_job_folder(tmp_path / "job", spec, ClusterSettings(shards=2, gpus_per_task=0)).folder
    dialog = merge_dialog
    dialog.shards.setText(str(job))
    dialog.out.setText(str(tmp_path / "export"))
    with qtbot.waitSignal(dialog.runner.failed, timeout=60_000):
        dialog.merge()
    said = dialog.status.text()
    assert "holds no finished results yet" in said and "when every cluster task has finished" in said
    assert "shard.json" not in said and "--shard" not in said
    qtbot.waitUntil(lambda: dialog.merge_button.isEnabled())
    elsewhere = tmp_path / "holiday photos"
    elsewhere.mkdir()
    dialog.shards.setText(str(elsewhere))
    with qtbot.waitSignal(dialog.runner.failed, timeout=60_000):
        dialog.merge()
    said = dialog.status.text()
    assert "neither a job folder" in said and "choose the job folder you copied back" in said
    assert "shard.json" not in said and "--shard" not in said
    assert not (tmp_path / "export").exists()


def test_prepare_dialog_says_how_prompts_go_out_and_refuses_tasks_that_would_get_none(qtbot, spec, tmp_path):
    from gpi_desktop.ui.cluster.dialogs import PrepareClusterDialog

    dialog = PrepareClusterDialog(spec, rows=40)  # batch size 1: waves of 4 prompts, so 10 tasks at most
    qtbot.addWidget(dialog)
    dialog.tasks.setValue(10)
    assert dialog.warning.isHidden()
    assert "in whole waves of 4 (4 batches of 1" in dialog.split.text() and not dialog.split.isHidden()
    dialog.tasks.setValue(12)
    assert not dialog.warning.isHidden() and "Only 10 of the 12 tasks would get prompts" in dialog.warning.text()
    assert "#b00020" in dialog.warning.styleSheet()  # what Write refuses is shown as an error
    assert dialog.split.isHidden()
    dialog.close()

"""The cluster job from a login node without SLURM here: `prepare`, two copies of one task, the model pin, the
merge from anywhere, and SLURM's memory words (SLURM's environment is faked; tests/test_slurm.py uses a real one)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import PROMPTS

from gpi_desktop.cli import main
from gpi_desktop.core.cluster.model_pin import PIN_FILE, check_task_model
from gpi_desktop.core.cluster.shards import Shard, load_job_file
from gpi_desktop.core.files.folderhold import hold_folder
from gpi_desktop.core.job.job import JobSpec
from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings


@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "speeches.csv"
    pd.DataFrame({"text": [f"{p} ({i})" for i in range(3) for p in PROMPTS]}).to_csv(
        path, index=False
    )  # 24, as in the issue
    return path


def prepare(model: Path, prompts: Path, out: Path, *flags: str) -> int:
    return main(
        [
            "prepare",
            "--model",
            str(model),
            "--prompts",
            str(prompts),
            "--column",
            "text",
            "--out",
            str(out),
            "--max-new-tokens",
            "4",
            *flags,
        ]
    )


def test_prepare_writes_the_dialogs_job_folder_with_every_flag_and_says_how_the_prompts_go_out(
    tiny_llama, prompts, tmp_path, capsys
):
    job = tmp_path / "job"
    assert (
        prepare(
            tiny_llama,
            prompts,
            job,
            "--tasks",
            "3",
            "--gpus",
            "0",
            "--time",
            "00:30:00",
            "--mem",
            "2G",
            "--cpus",
            "2",
            "--partition",
            "short",
            "--account",
            "lab",
            "--qos",
            "low",
            "--max-running",
            "2",
            "--setup",
            "module load python",
            "--setup",
            "source ~/gpi/bin/activate",
            "--pooling",
            "mean",
            "--command",
            "python -m gpi_desktop",
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "The 24 prompts go to the 3 tasks one by one" in out and f"bash {job}/run.sbatch" in out
    script = (job / "run.sbatch").read_text()
    for line in (
        "#SBATCH --array=1-3%2",
        "#SBATCH --time=00:30:00",
        "#SBATCH --mem=2G",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --partition=short",
        "#SBATCH --account=lab",
        "#SBATCH --qos=low",
        "module load python",
        "source ~/gpi/bin/activate",
        "python -m gpi_desktop",
    ):
        assert line in script
    assert "#SBATCH --gres" not in script and "#SBATCH --gpus" not in script
    spec = load_job_file(job / "job.json").spec
    assert spec.settings.pooling == "mean" and spec.settings.device == "cpu" and spec.settings.max_new_tokens == 4
    readme = (job / "README.txt").read_text()
    assert "whole waves" not in readme and "one by one" in readme


def test_prepare_refuses_tasks_that_would_get_no_prompts_and_names_the_wave(tiny_llama, prompts, tmp_path, capsys):
    # 24 prompts at batch size 4 go out in waves of 16 (4 batches of 4): only two tasks can get any.
    assert prepare(tiny_llama, prompts, tmp_path / "job", "--tasks", "3", "--gpus", "0", "--batch-size", "4") == 2
    err = capsys.readouterr().err
    assert "Only 2 of the 3 tasks would get prompts" in err and "whole waves of 16 (4 batches of 4" in err
    assert not (tmp_path / "job").exists()
    assert prepare(tiny_llama, prompts, tmp_path / "job", "--tasks", "2", "--gpus", "0", "--batch-size", "4") == 0
    out = capsys.readouterr().out
    assert "in whole waves of 16 (4 batches of 4" in out and "2 waves for 2 tasks" in out
    assert "whole waves of 16" in (tmp_path / "job" / "README.txt").read_text().replace("\n", " ")


def test_prepare_prints_the_dialogs_warnings_and_refuses_its_errors(tiny_llama, prompts, tmp_path, capsys):
    assert prepare(tiny_llama, prompts, tmp_path / "a", "--tasks", "3", "--gpus", "0", "--time", "eight hours") == 2
    assert "not in SLURM's form" in capsys.readouterr().err
    assert prepare(tiny_llama, prompts, tmp_path / "b", "--tasks", "3", "--gpus", "1", "--device", "cpu") == 2
    assert "leave --device out" in capsys.readouterr().err
    many = tmp_path / "many.csv"
    pd.DataFrame({"text": [f"prompt {i}" for i in range(1001)]}).to_csv(many, index=False)
    assert prepare(tiny_llama, many, tmp_path / "c", "--tasks", "1001", "--gpus", "0") == 0
    assert "Warning: 1001 tasks are more than SLURM allows by default" in capsys.readouterr().out


def _job(tmp_path: Path, model: Path, prompts: Path, tasks: int = 2) -> Path:
    job = tmp_path / "job"
    assert prepare(model, prompts, job, "--tasks", str(tasks), "--gpus", "0") == 0
    return job


def test_a_second_copy_of_a_running_task_says_so_and_exits_0_whatever_it_finds(tiny_llama, prompts, tmp_path, capsys):
    job = _job(tmp_path, tiny_llama, prompts)
    out = job / "shards" / "1"
    capsys.readouterr()
    # The first copy holds the shard folder from before it decides anything (even before its journal exists).
    with hold_folder(out):
        for flags in ([], ["--resume"]):
            assert main(["run", "--job", str(job / "job.json"), "--shard", "1/2", "--out", str(out), *flags]) == 0
            assert "already running elsewhere" in capsys.readouterr().out
        (out / ".gpi-run").mkdir()
        (out / ".gpi-run" / "journal.json").write_text("{}")  # the first copy's journal, as it starts writing
        assert main(["run", "--job", str(job / "job.json"), "--shard", "1/2", "--out", str(out)]) == 0
        assert "already running elsewhere" in capsys.readouterr().out
    assert not (out / "shard.json").exists()


def test_a_job_without_a_pinned_model_version_pins_the_first_tasks_and_the_others_follow(monkeypatch, tmp_path):
    from gpi_desktop.core.cluster import model_pin

    spec = JobSpec(tmp_path / "p.csv", "text", RunSettings(model="org/model", revision=None), ExportSettings())
    found = iter(["a" * 40, "b" * 40])  # the second task's cache holds a newer commit
    monkeypatch.setattr(model_pin, "task_model_revision", lambda spec: next(found))
    first = check_task_model(tmp_path, spec, Shard(2, 3))
    second = check_task_model(tmp_path, spec, Shard(1, 3))
    assert first.settings.revision == second.settings.revision == "a" * 40
    assert json.loads((tmp_path / PIN_FILE).read_text()) == {"model": "org/model", "revision": "a" * 40, "task": "2/3"}


def test_a_model_folder_changed_between_tasks_stops_the_next_task_before_it_loads(
    tiny_llama, prompts, tmp_path, capsys, monkeypatch
):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    job = _job(tmp_path, model, prompts)
    assert (
        main(["run", "--job", str(job / "job.json"), "--shard", "1/2", "--out", str(job / "shards" / "1"), "--quiet"])
        == 0
    )
    assert json.loads((job / PIN_FILE).read_text())["task"] == "1/2"
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    from gpi_desktop.core.model import models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    capsys.readouterr()
    assert main(["run", "--job", str(job / "job.json"), "--shard", "2/2", "--out", str(job / "shards" / "2")]) == 2
    assert "changed since task 1/2 of this job started" in capsys.readouterr().err
    assert not (job / "shards" / "2" / "shard.json").exists()


def test_merge_takes_the_job_folder_from_any_folder_and_explains_an_unexpanded_pattern(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["merge", "shards/*", "--out", "export"]) == 2
    err = capsys.readouterr().err
    assert "'shards/*' matched no folder" in err and "give the job folder itself" in err
    assert "gpi-desktop merge ~/job --out ~/job-export" in err


def test_a_memory_refusal_under_slurm_mem_says_to_raise_the_sbatch_mem_line(monkeypatch):
    from gpi_desktop.core.model.memory import SLURM_LIMIT, DeviceMemory, estimate_memory, fit_verdict

    monkeypatch.setenv("SLURM_JOB_ID", "7")
    config = {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "vocab_size": 128256,
    }
    estimate = estimate_memory(config, dtype="bfloat16", batch_size=1, prompt_tokens=100, max_new_tokens=100)
    task = DeviceMemory("this task's memory allocation (1 GB, SLURM --mem)", 1 << 29, 1 << 30, "cpu", None, SLURM_LIMIT)
    advice = " ".join(fit_verdict(estimate, [task]).suggestions)
    assert "raise #SBATCH --mem in run.sbatch to at least --mem=" in advice and "this task has 1G" in advice
    assert "NVIDIA" not in advice and "close other programs" not in advice
    machine = DeviceMemory("this computer's memory (RAM)", 1 << 29, 1 << 30, "cpu", None)
    assert "close other programs" in " ".join(fit_verdict(estimate, [machine]).suggestions)

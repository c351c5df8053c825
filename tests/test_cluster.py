"""Cluster shards: row selection, job folders, sbatch script, shard runs as parallel processes, resume, and merge."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import PROMPTS
from fakes import RecordingState

from gpi_desktop.cli import main
from gpi_desktop.core.cluster.sbatch import STANDARD_OPTIONS, ClusterSettings, sbatch_script, write_job_folder
from gpi_desktop.core.cluster.shards import Shard, assign_rows, load_job_file
from gpi_desktop.core.job.job import JobRun, JobSpec, load_prompts, run_job
from gpi_desktop.core.job.journals import ResumePolicy
from gpi_desktop.core.vocabulary.errors import Cancelled, SettingsError
from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings

MAX_NEW = 12
N = 3
# Three whole waves at batch size 2 (engine.wave_size: shards are cut by whole waves), one for each shard.
SPEECHES = PROMPTS + [f"{p} (again)" for p in PROMPTS] + [f"{p}, once more" for p in PROMPTS]


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def make_job(tmp_path: Path, model: Path, prompts: Path, name: str, *, batch_size="2", **settings) -> Path:
    spec = JobSpec(
        prompts,
        "text",
        RunSettings(model=str(model), max_new_tokens=MAX_NEW, batch_size=batch_size, **settings),
        ExportSettings(),
    )
    return write_job_folder(tmp_path / name, spec, ClusterSettings(shards=N, gpus_per_task=0)).folder


def run_shard_in_process(job: Path, index: int, out: Path, *extra: str) -> int:
    return main(
        ["run", "--job", str(job / "job.json"), "--shard", f"{index}/{N}", "--out", str(out), "--quiet", *extra]
    )


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "speeches.csv"
    pd.DataFrame({"id": range(len(SPEECHES)), "text": SPEECHES, "party": list("AB" * (len(SPEECHES) // 2))}).to_csv(
        path, index=False
    )
    return path


@pytest.fixture(scope="module")
def fixed_job(tmp_path_factory, tiny_llama, prompts_file) -> Path:
    """A job with batch size 2, its three shards run as parallel processes, as SLURM array tasks would run."""
    job = make_job(tmp_path_factory.mktemp("jobs"), tiny_llama, prompts_file, "job")
    env = dict(os.environ, GPI_DESKTOP_LOG_DIR=str(job / "logs"))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gpi_desktop",
                "run",
                "--job",
                "job.json",
                "--shard",
                f"{i}/{N}",
                "--out",
                f"shards/{i}",
                "--quiet",
            ],
            cwd=job,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(1, N + 1)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    return job


# -- which rows a shard runs ---------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [None, 1, 3, 8])
@pytest.mark.parametrize("count", [1, 3, 7, 40])
def test_shards_cover_every_row_once_and_balance_prompt_length(batch, count):
    rng = random.Random(count * 10 + (batch or 0))
    lengths = [rng.randint(1, 300) for _ in range(35)]
    shards = assign_rows(lengths, count, batch, max_new_tokens=20)
    assert sorted(r for rows in shards for r in rows) == list(range(35))
    assert shards == assign_rows(list(lengths), count, batch, max_new_tokens=20)  # deterministic
    unit = max(batch or 1, 1)
    heaviest_unit = unit * (max(lengths) + 20)
    loads = [sum(lengths[r] + 20 for r in rows) for rows in shards]
    assert max(loads) - min(loads) <= heaviest_unit


def test_whole_wave_shards_replan_into_the_single_machine_waves():
    from gpi_desktop.core.generation.engine import EncodedPrompt, plan_waves, wave_size

    rng = random.Random(5)
    prompts = [EncodedPrompt(row, (0,) * rng.randint(1, 9)) for row in range(23)]  # many equal lengths
    lengths = [len(p.ids) for p in prompts]
    for batch in (1, 2, 4, 5):
        single = {tuple(p.row for p in w) for w in plan_waves(prompts, batch)}
        for count in (2, 3, 6):
            for rows in assign_rows(lengths, count, wave_size(batch)):
                mine = [prompts[r] for r in rows]
                assert {tuple(p.row for p in w) for w in plan_waves(mine, batch)} <= single


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", ""])
def test_shard_numbers_outside_one_to_n_are_refused_in_plain_words(text):
    with pytest.raises(SettingsError, match="--shard"):
        Shard.parse(text)


def test_shard_parse_counts_from_one():
    assert Shard.parse(" 3/10 ") == Shard(3, 10) and Shard(3, 10).label == "3/10"


# -- job folder and sbatch script ------------------------------------------------------------------------


def test_job_folder_holds_prompts_copy_job_file_script_and_readme(tiny_llama, prompts_file, tmp_path):
    cluster = ClusterSettings(
        shards=5,
        gpus_per_task=2,
        time="1-12:00:00",
        memory="80g",
        model_cache="~/scratch/hf",
        partition="gpu",
        account="lab-42",
        setup="module load cuda",
    )
    spec = JobSpec(
        prompts_file,
        None,
        RunSettings(model=str(tiny_llama), pooling="mean", device="cpu"),
        ExportSettings("h_", "texts"),
    )
    job = write_job_folder(tmp_path / "job", spec, cluster)
    assert (job.folder / "input" / "speeches.csv").read_bytes() == prompts_file.read_bytes()
    loaded = load_job_file(job.job_file)
    assert loaded.shards == 5 and loaded.spec.column == "text"
    assert loaded.spec.prompts_path == job.folder / "input" / "speeches.csv"
    assert loaded.spec.settings.pooling == "mean" and loaded.spec.export == ExportSettings("h_", "texts")
    assert loaded.spec.settings.device == "cuda"  # the cluster's GPUs, whatever the desktop used, never the CPU
    script = job.script.read_text()
    for line in (
        "#SBATCH --array=1-5",
        "#SBATCH --gres=gpu:2",
        "#SBATCH --time=1-12:00:00",
        "#SBATCH --mem=80G",
        "#SBATCH --requeue",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab-42",
        'export HF_HOME="$HOME/scratch/hf"',
        "module load cuda",
    ):
        assert line in script
    readme = job.readme.read_text()
    for words in (
        "sbatch run.sbatch",
        "squeue",
        "gpi-desktop merge job --out job-export",
        "Merge cluster results",
        "scp -r",
    ):
        assert words in readme
    assert (job.folder / "logs").is_dir()


@pytest.mark.parametrize(
    "cluster",
    [
        ClusterSettings(),
        ClusterSettings(shards=1, gpus_per_task=0, partition="x", account="y", setup="source a/b\nexport Z=1"),
    ],
)
def test_sbatch_script_passes_bash_n_and_uses_only_standard_options(cluster, tmp_path):
    path = tmp_path / "run.sbatch"
    path.write_text(sbatch_script(cluster))
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    options = re.findall(r"^#SBATCH --([a-z-]+)", path.read_text(), flags=re.M)
    assert options and set(options) <= STANDARD_OPTIONS
    assert "array" in options and "requeue" in options and "time" in options and "mem" in options


@pytest.mark.parametrize(
    "field, value",
    [("time", "8 hours"), ("memory", "lots"), ("partition", "a b"), ("model_cache", 'x"; rm -rf ~'), ("shards", 0)],
)
def test_cluster_fields_out_of_slurm_form_are_refused(field, value):
    with pytest.raises(SettingsError):
        ClusterSettings(**{field: value}).validate()


def _fake_program(tmp_path: Path) -> Path:
    fake = tmp_path / "fake-gpi"
    fake.write_text('#!/bin/bash\necho "$@" >> "$CALLS"\nif [ -n "${KILL_ME:-}" ]; then kill -9 $$; fi\n')
    fake.chmod(0o755)
    return fake


def test_script_lets_the_program_decide_under_its_hold_and_skips_a_finished_shard(tmp_path):
    job = tmp_path / "job"
    (job / "shards").mkdir(parents=True)
    (job / "job.json").write_text("{}")
    (job / "run.sbatch").write_text(sbatch_script(ClusterSettings(shards=3)))
    calls = tmp_path / "calls.txt"
    env = dict(os.environ, GPI_DESKTOP=str(_fake_program(tmp_path)), CALLS=str(calls), SLURM_SUBMIT_DIR=str(job))

    def task(i: int) -> str:
        calls.unlink(missing_ok=True)
        done = subprocess.run(
            ["bash", str(job / "run.sbatch")],
            env=dict(env, SLURM_ARRAY_TASK_ID=str(i)),
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        return calls.read_text().strip() if calls.exists() else ""

    # Always --resume: whether the shard starts, continues, or is another copy's is decided by the program,
    # under its hold on the shard folder, never by a check here that a second copy could race.
    assert task(2) == "run --job job.json --shard 2/3 --out shards/2 --resume"
    (job / "shards" / "2" / ".gpi-run").mkdir(parents=True)  # what a preempted task leaves
    assert task(2) == "run --job job.json --shard 2/3 --out shards/2 --resume"
    shutil.rmtree(job / "shards" / "2" / ".gpi-run")
    (job / "shards" / "2" / "shard.json").write_text("{}")
    assert task(2) == ""  # finished: not run again


def test_a_task_killed_with_sigkill_ends_its_log_with_what_happened_and_the_command_to_continue(tmp_path):
    job = tmp_path / "job"
    (job / "shards").mkdir(parents=True)
    (job / "job.json").write_text("{}")
    (job / "run.sbatch").write_text(sbatch_script(ClusterSettings(shards=3)))
    env = dict(
        os.environ,
        GPI_DESKTOP=str(_fake_program(tmp_path)),
        CALLS=str(tmp_path / "calls"),
        SLURM_SUBMIT_DIR=str(job),
        SLURM_ARRAY_TASK_ID="3",
        KILL_ME="1",
    )
    done = subprocess.run(["bash", str(job / "run.sbatch")], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 137
    last = done.stderr.strip().splitlines()[-1]
    assert "killed (SIGKILL)" in last and "#SBATCH --mem" in last
    assert last.endswith(f"bash {job}/run.sbatch --array=3")


# -- shards as parallel processes, merged, against one machine ---------------------------------------------


def test_parallel_shards_merge_to_the_single_machine_files_byte_for_byte(fixed_job, tmp_path, capsys):
    single = tmp_path / "single"
    assert main(["run", "--job", str(fixed_job / "job.json"), "--out", str(single), "--quiet"]) == 0
    rows = [
        json.loads((fixed_job / "shards" / str(i) / "shard.json").read_text())["shard"]["rows"] for i in range(1, N + 1)
    ]
    assert sorted(sum(rows, [])) == list(range(len(SPEECHES))) and all(rows)
    for i, shard_rows in enumerate(rows, 1):  # original row numbers, loadable as gpi_pack does
        assert sorted(p.name for p in (fixed_job / "shards" / str(i) / "hidden").iterdir()) == sorted(
            f"hidden_{k}.pt" for k in shard_rows
        )

    merged = tmp_path / "merged"
    assert main(["merge", *sorted(map(str, (fixed_job / "shards").iterdir())), "--out", str(merged), "--quiet"]) == 0
    got, want = digest(merged), digest(single)
    assert set(got) == set(want)
    # Whole waves of the single-machine plan: every data file is identical, byte for byte.
    assert {k: v for k, v in got.items() if k != "manifest.json"} == {
        k: v for k, v in want.items() if k != "manifest.json"
    }
    m, s = manifest(merged), manifest(single)
    assert m.pop("sharded") == {
        "shards": N,
        "batch_sizes": [2, 2, 2],
        "devices": ["cpu"] * N,
        "precisions": ["float32"] * N,
    }
    assert m == s
    texts = pd.read_pickle(merged / "generated_texts.pkl")
    assert texts["P"].tolist() == SPEECHES


def test_auto_batch_shards_merge_with_equal_texts_and_close_vectors(tiny_llama, prompts_file, tmp_path):
    args = [
        "--model",
        str(tiny_llama),
        "--prompts",
        str(prompts_file),
        "--column",
        "text",
        "--max-new-tokens",
        str(MAX_NEW),
        "--device",
        "cpu",
        "--pooling",
        "mean",
        "--quiet",
    ]
    single = tmp_path / "single"
    assert main(["run", *args, "--out", str(single)]) == 0
    for i in range(1, N + 1):
        assert main(["run", *args, "--shard", f"{i}/{N}", "--out", str(tmp_path / "shards" / str(i))]) == 0
    merged = tmp_path / "merged"
    assert main(["merge", str(tmp_path / "shards"), "--out", str(merged), "--quiet"]) == 0

    assert set(digest(merged)) == set(digest(single))
    a, b = pd.read_pickle(merged / "generated_texts.pkl"), pd.read_pickle(single / "generated_texts.pkl")
    assert a["X"].tolist() == b["X"].tolist() and a["P"].tolist() == b["P"].tolist() == SPEECHES
    assert (merged / "generated_texts.csv").read_bytes() == (single / "generated_texts.csv").read_bytes()
    np.testing.assert_allclose(
        np.load(merged / "hidden_states.npy"), np.load(single / "hidden_states.npy"), atol=1e-5, rtol=1e-4
    )
    m, s = manifest(merged), manifest(single)
    assert m.pop("sharded")["shards"] == N
    for d in (m, s):  # only the batch sizes and the vector files' hashes may differ
        d["settings"].pop("batch_size")
        d.pop("sha256")
    assert m == s


# -- merge refuses what is not one job's complete set of rows ---------------------------------------------


def _merge(*dirs: Path, out: Path) -> int:
    return main(["merge", *map(str, dirs), "--out", str(out), "--quiet"])


def test_merge_refuses_a_missing_shard_and_lists_its_rows(fixed_job, tmp_path, capsys):
    shards = fixed_job / "shards"
    assert _merge(shards / "1", shards / "3", out=tmp_path / "out") == 2
    err = capsys.readouterr().err
    rows = json.loads((shards / "2" / "shard.json").read_text())["shard"]["rows"]
    assert "missing" in err and "shard 2 of 3" in err and ", ".join(map(str, rows)) in err
    assert not (tmp_path / "out").exists()


def test_merge_refuses_duplicated_rows(fixed_job, tmp_path, capsys):
    shards = fixed_job / "shards"
    copy = tmp_path / "copy-of-1"
    shutil.copytree(shards / "1", copy)
    assert _merge(shards / "1", shards / "2", shards / "3", copy, out=tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "twice" in err and str(copy) in err
    assert not (tmp_path / "out").exists()


def test_merge_refuses_a_shard_of_another_job_naming_it(fixed_job, tiny_llama, prompts_file, tmp_path, capsys):
    other = make_job(tmp_path, tiny_llama, prompts_file, "other", pooling="max")
    assert run_shard_in_process(other, 3, other / "shards" / "3") == 0
    shards = fixed_job / "shards"
    assert _merge(shards / "1", shards / "2", other / "shards" / "3", out=tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "different job" in err and "pooling" in err and str(other / "shards" / "3") in err


def test_merge_refuses_an_unfinished_or_damaged_shard(fixed_job, tmp_path, capsys):
    shards = tmp_path / "shards"
    shutil.copytree(fixed_job / "shards", shards)
    (shards / "3" / "shard.json").unlink()
    (shards / "3" / ".gpi-run").mkdir()
    assert _merge(shards / "1", shards / "2", shards / "3", out=tmp_path / "out") == 2
    assert "did not finish" in capsys.readouterr().err
    shutil.rmtree(shards / "3")
    shutil.copytree(fixed_job / "shards" / "3", shards / "3")
    with open(shards / "2" / "shard-results.jsonl", "ab") as handle:
        handle.write(b"\n")
    assert _merge(shards / "1", shards / "2", shards / "3", out=tmp_path / "out") == 2
    assert "changed" in capsys.readouterr().err


# -- a shard resumes like a normal run -------------------------------------------------------------------


def _largest_shard(job: Path) -> int:
    sizes = {
        i: len(json.loads((job / "shards" / str(i) / "shard.json").read_text())["shard"]["rows"])
        for i in range(1, N + 1)
    }
    return max(sizes, key=sizes.get)


def test_interrupted_shard_resumes_to_the_same_shard_folder(fixed_job, tmp_path, capsys):
    spec = load_job_file(fixed_job / "job.json").spec
    index = _largest_shard(fixed_job)  # two batches: stopped after the first
    out = tmp_path / "shard"
    with pytest.raises(Cancelled):
        run_job(JobRun(spec, load_prompts(spec), out / ".gpi-run", Shard(index, N)), RecordingState(cancel_after=1))
    assert (out / ".gpi-run" / "records.jsonl").read_bytes().count(b"\n") >= 1
    assert _merge(tmp_path, out=tmp_path / "export") == 2  # the folder holding it: the shard is found, unfinished
    assert "did not finish" in capsys.readouterr().err
    assert run_shard_in_process(fixed_job, index, out) == 2  # an unfinished shard is protected without --resume
    assert run_shard_in_process(fixed_job, index, out, "--resume") == 0
    assert digest(out) == digest(fixed_job / "shards" / str(index))
    assert run_shard_in_process(fixed_job, index, out, "--resume") == 0  # requeued after finishing: nothing to redo
    assert digest(out) == digest(fixed_job / "shards" / str(index))


def test_a_shard_journal_never_resumes_another_shard(fixed_job, tmp_path, capsys):
    spec = load_job_file(fixed_job / "job.json").spec
    out = tmp_path / "shard"
    with pytest.raises(Cancelled):
        run_job(
            JobRun(spec, load_prompts(spec), out / ".gpi-run", Shard(_largest_shard(fixed_job), N)),
            RecordingState(cancel_after=1),
        )
    assert run_shard_in_process(fixed_job, _largest_shard(fixed_job) % N + 1, out, "--resume") == 2
    assert "shard" in capsys.readouterr().err


def test_job_file_settings_cannot_be_overridden_by_flags(fixed_job, tmp_path, capsys):
    assert main(["run", "--job", str(fixed_job / "job.json"), "--out", str(tmp_path / "o"), "--pooling", "max"]) == 2
    assert "--pooling" in capsys.readouterr().err


def test_a_shard_without_prompts_still_finishes_its_folder(tiny_llama, prompts_file, tmp_path):
    args = [
        "--model",
        str(tiny_llama),
        "--prompts",
        str(prompts_file),
        "--max-new-tokens",
        "4",
        "--device",
        "cpu",
        "--quiet",
        "--batch-size",
        "4",
    ]  # 8 prompts in 2 batches: shard 3 of 3 gets none
    assert main(["run", *args, "--shard", "3/3", "--out", str(tmp_path / "s3")]) == 0
    shard = json.loads((tmp_path / "s3" / "shard.json").read_text())
    assert shard["shard"]["rows"] == [] and np.load(tmp_path / "s3" / "shard-states.npy").shape == (0, 64)


def test_sigterm_from_slurm_stops_a_shard_keeping_its_finished_prompts(tiny_llama, prompts_file, tmp_path):
    out = tmp_path / "shard"
    args = [
        "run",
        "--model",
        str(tiny_llama),
        "--prompts",
        str(prompts_file),
        "--max-new-tokens",
        "40",
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--shard",
        "1/1",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpi_desktop", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, GPI_DESKTOP_LOG_DIR=str(tmp_path / "logs")),
    )
    records = out / ".gpi-run" / "records.jsonl"
    deadline = time.monotonic() + 120
    while not (records.exists() and records.read_bytes().count(b"\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, "the shard ended before it could be preempted"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # what SLURM sends on preemption or at the time limit
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    # The journal is kept, as after Cancel: test_interrupted_shard_resumes_to_the_same_shard_folder resumes one.
    assert records.read_bytes().count(b"\n") >= 1 and not (out / "shard.json").exists()
    assert b"--resume" in err


# -- files a colleague can read; a task of a second submission; messages inside a SLURM log ------------------


def test_job_and_shard_files_are_readable_like_the_exports_files(fixed_job):
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    for path in (
        fixed_job / "job.json",
        fixed_job / "shards" / "1" / "shard.json",
        fixed_job / "shards" / "1" / "shard-results.jsonl",
    ):
        assert path.stat().st_mode & 0o777 == expected, path


def test_a_shard_file_we_may_not_read_is_reported_as_a_permission_problem(fixed_job, tmp_path, monkeypatch, capsys):
    blocked = fixed_job / "shards" / "2" / "shard.json"
    real = Path.read_text

    def read_text(self, *args, **kwargs):
        if self == blocked:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    assert _merge(fixed_job, out=tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "permission denied" in err and "damaged" not in err and "chmod" in err


def test_a_task_of_a_second_submission_finds_its_shard_busy_and_has_nothing_to_do(fixed_job, tmp_path, capsys):
    from gpi_desktop.core.files.runstore import RunJournal

    spec = load_job_file(fixed_job / "job.json").spec
    index = _largest_shard(fixed_job)
    out = tmp_path / "shard"
    with pytest.raises(Cancelled):
        run_job(JobRun(spec, load_prompts(spec), out / ".gpi-run", Shard(index, N)), RecordingState(cancel_after=1))
    key = json.loads((out / ".gpi-run" / "journal.json").read_text())["key"]
    running = RunJournal.open(out / ".gpi-run", key)  # the first submission's task, still at work
    try:
        capsys.readouterr()
        assert run_shard_in_process(fixed_job, index, out, "--resume") == 0
        assert "already running elsewhere" in capsys.readouterr().out
    finally:
        running.close()


def test_resuming_a_shard_counts_the_shards_prompts_not_the_jobs(fixed_job, tmp_path):
    spec = load_job_file(fixed_job / "job.json").spec
    index = _largest_shard(fixed_job)
    rows = len(json.loads((fixed_job / "shards" / str(index) / "shard.json").read_text())["shard"]["rows"])
    out = tmp_path / "shard"
    with pytest.raises(Cancelled):
        run_job(JobRun(spec, load_prompts(spec), out / ".gpi-run", Shard(index, N)), RecordingState(cancel_after=1))
    state = RecordingState()
    run_job(JobRun(spec, load_prompts(spec), out / ".gpi-run", Shard(index, N)), state, ResumePolicy.CONTINUE)
    resuming = [s for s in state.statuses if s.startswith("Resuming")]
    assert resuming and resuming[0].endswith(f"of {rows} prompts are already done.") and rows < len(SPEECHES)


def test_a_stopped_slurm_task_is_told_in_slurms_terms_why_and_what_to_type(monkeypatch, tmp_path):
    from gpi_desktop.cli import run as run_command
    from gpi_desktop.cli.entry import build_parser
    from gpi_desktop.core.cluster import slurm
    from gpi_desktop.core.cluster.slurm import JobRecord

    args = build_parser().parse_args(
        ["run", "--job", str(tmp_path / "job" / "job.json"), "--shard", "2/3", "--out", "shards/2"]
    )
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert "--resume" in run_command.stopped_message(args)
    for name, value in {"SLURM_JOB_ID": "41", "SLURM_ARRAY_JOB_ID": "39", "SLURM_ARRAY_TASK_ID": "2"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    resubmit = f"bash {tmp_path / 'job' / 'run.sbatch'} --array=2"  # absolute: works from any folder
    # What `scontrol -o show job 39_2` said at the stop, as slurm-wlm 22.05 says it.
    records = {
        "timeout": "JobId=41 ArrayJobId=39 ArrayTaskId=2 JobState=COMPLETING Reason=TimeLimit Restarts=0 "
        "TimeLimit=00:20:00",
        "scancel": "JobId=41 ArrayJobId=39 ArrayTaskId=2 JobState=COMPLETING Reason=None Restarts=0 TimeLimit=00:20:00",
        "requeue": "JobId=41 ArrayJobId=39 ArrayTaskId=2 JobState=COMPLETING Reason=None Restarts=1 TimeLimit=00:20:00",
    }
    said = {}
    for cause, text in records.items():
        monkeypatch.setattr(slurm, "ask_controller", lambda task, text=text: JobRecord.parse(text))
        said[cause] = run_command.stopped_message(args)
    assert "--resume" not in " ".join(said.values())
    assert "time limit of 00:20:00" in said["timeout"] and said["timeout"].endswith(f"{resubmit} --time=00:40:00")
    assert "SLURM does not start it again" in said["scancel"] and said["scancel"].endswith(resubmit)
    assert "requeued" in said["requeue"] and "BeginTime" in said["requeue"] and "about 2 minutes" in said["requeue"]
    assert "scontrol update JobId=39_2 StartTime=now" in said["requeue"]
    monkeypatch.setattr(slurm, "ask_controller", lambda task: None)  # the controller did not answer
    unknown = run_command.stopped_message(args)
    assert "requeues" in unknown and resubmit in unknown and "--time" in unknown


# -- the script as a cluster runs it: from any folder, typed GPUs, limits -----------------------------------


SCRIPT_VARIANTS = [
    ClusterSettings(),
    ClusterSettings(shards=1, gpus_per_task=0, partition="x", account="y", qos="long", setup="source a/b\nexport Z=1"),
    ClusterSettings(
        shards=12, gpus_per_task=2, gpu_type="a100", gpu_option="gpus", array_throttle=3, model_cache="~/scratch/hf"
    ),
]


@pytest.mark.parametrize("cluster", SCRIPT_VARIANTS)
def test_sbatch_script_passes_shellcheck(cluster, tmp_path):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt install shellcheck; .ci/run installs it)")
    path = tmp_path / "run.sbatch"
    path.write_text(sbatch_script(cluster))
    check = subprocess.run(["shellcheck", "--shell=bash", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_typed_gpu_requests_qos_and_an_array_throttle_are_written():
    gres = sbatch_script(ClusterSettings(shards=5, gpu_type="a100", qos="long", array_throttle=2))
    assert "#SBATCH --gres=gpu:a100:1" in gres and "#SBATCH --qos=long" in gres and "#SBATCH --array=1-5%2" in gres
    gpus = sbatch_script(ClusterSettings(gpus_per_task=2, gpu_option="gpus"))
    assert "#SBATCH --gpus=2" in gpus and "#SBATCH --gres" not in gpus
    cpu = sbatch_script(ClusterSettings(gpus_per_task=0))
    assert not re.search(r"^#SBATCH --(gres|gpus)", cpu, flags=re.M)


def test_more_tasks_than_slurms_default_max_array_size_are_warned_about_with_what_to_do():
    assert ClusterSettings(shards=1000).warnings() == []
    (warning,) = ClusterSettings(shards=1001).warnings()
    assert "MaxArraySize" in warning and "fewer tasks" in warning
    assert "MaxArraySize" in sbatch_script(ClusterSettings(shards=1001))


def _fake_sbatch(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sbatch"
    fake.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$SBATCH_ARGS"\necho "Submitted batch job 41"\n')
    fake.chmod(0o755)
    return bin_dir


def test_running_the_script_from_any_folder_submits_it_with_absolute_log_paths(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    (job / "job.json").write_text("{}")
    (job / "run.sbatch").write_text(sbatch_script(ClusterSettings(shards=3)))
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    args = tmp_path / "args.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{_fake_sbatch(tmp_path)}:{env['PATH']}", SBATCH_ARGS=str(args))
    done = subprocess.run(
        ["bash", "../job/run.sbatch", "--array=3"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert args.read_text().splitlines() == [
        f"--chdir={job}",
        f"--output={job}/logs/%x-%A_%a.log",
        "--array=3",
        f"{job}/run.sbatch",
    ]
    assert (job / "logs").is_dir()


def test_a_task_submitted_with_sbatch_from_another_folder_still_finds_its_job_folder(tmp_path):
    job = tmp_path / "job"
    (job / "shards").mkdir(parents=True)
    (job / "job.json").write_text("{}")
    (job / "run.sbatch").write_text(sbatch_script(ClusterSettings(shards=3, gpus_per_task=0)))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"  # what SLURM says of the job: the script's absolute path as submitted
    scontrol.write_text(f'#!/bin/bash\necho "JobId=41 JobName=gpi-desktop"\necho "   Command={job}/run.sbatch"\n')
    scontrol.chmod(0o755)
    calls = tmp_path / "calls.txt"
    home = tmp_path / "home"
    home.mkdir()
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        GPI_DESKTOP=str(_fake_program(tmp_path)),
        CALLS=str(calls),
        SLURM_SUBMIT_DIR=str(home),
        SLURM_JOB_ID="41",
        SLURM_ARRAY_TASK_ID="1",
    )
    done = subprocess.run(["bash", str(job / "run.sbatch")], cwd=home, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert calls.read_text().strip() == "run --job job.json --shard 1/3 --out shards/1 --resume"
    # Nowhere to be found: the message goes to the task's log, in plain words.
    scontrol.write_text("#!/bin/bash\nexit 1\n")
    done = subprocess.run(["bash", str(job / "run.sbatch")], cwd=home, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "job.json was not found" in done.stderr


def test_tasks_run_offline_with_the_jobs_model_cache(tmp_path):
    script = sbatch_script(ClusterSettings(model_cache="/scratch/me/hf"))
    assert 'export HF_HOME="/scratch/me/hf"' in script and 'export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"' in script


def test_a_gpu_job_on_a_machine_without_a_usable_gpu_stops_loudly(
    tiny_llama, prompts_file, tmp_path, capsys, monkeypatch
):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a broken CUDA setup, as torch sees it
    spec = JobSpec(
        prompts_file,
        "text",
        RunSettings(model=str(tiny_llama), max_new_tokens=MAX_NEW, batch_size="2"),
        ExportSettings(),
    )
    job = write_job_folder(tmp_path / "job", spec, ClusterSettings(shards=N, gpus_per_task=1)).folder
    assert load_job_file(job / "job.json").spec.settings.device == "cuda"
    assert run_shard_in_process(job, 1, job / "shards" / "1") == 2
    err = capsys.readouterr().err
    assert "asks for a GPU" in err and "CPU" in err
    assert not (job / "shards" / "1" / "shard.json").exists()


def _pretend_ran_on(shard: Path, device: str, precision: str) -> None:
    path = shard / "shard.json"
    data = json.loads(path.read_text())
    data["shard"]["device"] = device
    data["manifest_fields"]["model"]["precision"] = precision
    path.write_text(json.dumps(data))


def test_merge_refuses_shards_of_different_devices_unless_told_and_states_each_shards_device(
    fixed_job, tmp_path, capsys
):
    job = tmp_path / "job"
    shutil.copytree(fixed_job, job)
    _pretend_ran_on(job / "shards" / "2", "cuda (NVIDIA A100 x1)", "bfloat16")
    assert _merge(job, out=tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "ran on cuda (NVIDIA A100 x1) in bfloat16" in err and "--allow-mixed-devices" in err
    assert not (tmp_path / "out").exists()
    assert main(["merge", str(job), "--out", str(tmp_path / "out"), "--allow-mixed-devices"]) == 0
    out = capsys.readouterr().err  # progress and status lines go to stderr
    assert "Shard 1 of 3:" in out and "on cpu in float32" in out and "on cuda (NVIDIA A100 x1) in bfloat16" in out
    sharded = manifest(tmp_path / "out")["sharded"]
    assert sharded["devices"][1].startswith("cuda") and sharded["precisions"] == ["float32", "bfloat16", "float32"]


def test_the_scripts_run_options_line_reaches_every_tasks_run(tmp_path):
    from gpi_desktop.core.cluster.sbatch import RUN_OPTIONS_LINE_INSIST

    job = tmp_path / "job"
    (job / "shards").mkdir(parents=True)
    (job / "job.json").write_text("{}")
    script = sbatch_script(ClusterSettings(shards=3))
    assert script.count('RUN_OPTIONS=""') == 1
    (job / "run.sbatch").write_text(script.replace('RUN_OPTIONS=""', RUN_OPTIONS_LINE_INSIST))
    calls = tmp_path / "calls.txt"
    env = dict(
        os.environ,
        GPI_DESKTOP=str(_fake_program(tmp_path)),
        CALLS=str(calls),
        SLURM_SUBMIT_DIR=str(job),
        SLURM_ARRAY_TASK_ID="2",
    )
    done = subprocess.run(["bash", str(job / "run.sbatch")], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert calls.read_text().strip() == "run --job job.json --shard 2/3 --out shards/2 --resume --ignore-memory-check"


def test_a_slurm_task_the_memory_estimate_stops_says_how_to_insist_in_the_script(
    tiny_llama, prompts_file, tmp_path, monkeypatch, capsys
):
    from gpi_desktop.core.cluster.sbatch import RUN_OPTIONS_LINE_INSIST
    from gpi_desktop.core.model import memory

    job = make_job(tmp_path, tiny_llama, prompts_file, "job")
    monkeypatch.setattr(
        memory,
        "available_memory",
        lambda device="auto": [memory.DeviceMemory("this node's memory (RAM)", 100_000, 200_000)],
    )
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    assert run_shard_in_process(job, 1, tmp_path / "s1") == 2
    err = capsys.readouterr().err
    assert "will not fit" in err and RUN_OPTIONS_LINE_INSIST in err and "run.sbatch" in err
    assert "give --ignore-memory-check" not in err  # a task's command is the script's, not the user's to type
    assert run_shard_in_process(job, 1, tmp_path / "s1", "--ignore-memory-check") == 0


def test_tasks_that_would_get_no_prompts_are_counted_from_the_rows_and_the_batch_size():
    from gpi_desktop.core.cluster.review import idle_tasks_sentence
    from gpi_desktop.core.cluster.shards import assign_rows, tasks_with_rows
    from gpi_desktop.core.job.job import shard_unit

    fixed = RunSettings(batch_size=8)  # waves of 4 batches: 32 rows go to a task together
    unit = shard_unit(fixed)
    assert unit == 32
    for rows, count in [(100, 10), (100, 4), (31, 2), (0, 3), (64, 2)]:
        busy = sum(1 for shard in assign_rows([5] * rows, count, unit) if shard)
        assert tasks_with_rows(rows, count, unit) == busy
    assert idle_tasks_sentence(100, 4, fixed) is None
    warning = idle_tasks_sentence(100, 10, fixed)
    assert warning.startswith("Only 4 of the 10 tasks would get prompts") and "at most 4 tasks" in warning
    assert "whole waves of 32 (4 batches of 8" in warning
    assert idle_tasks_sentence(100, 10, RunSettings(batch_size="auto")) is None  # any single row: all ten work
    assert idle_tasks_sentence(3, 5, RunSettings(batch_size="auto")).startswith("Only 3 of the 5 tasks")

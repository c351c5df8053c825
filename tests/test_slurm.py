"""A cluster job from a login node on a real one-node SLURM cluster, submitted by an ordinary user, as on a real one.

Runs only where .ci/slurm-up.sh started munged, slurmctld and slurmd on this machine and the tests run as root
(to act as that user), which `.ci/run` does:

    GPI_TEST_SLURM=1 GPI_TEST_SLURM_USER=<user> python -m pytest -m slurm tests/test_slurm.py

1. `gpi-desktop prepare` writes the job folder as the user; task 1 is submitted twice at once (exactly one copy
   runs it, the other says "already running elsewhere" and ends with exit 0); the whole job is submitted from the
   user's home folder, one task is requeued while it runs (it continues where it stopped); the job folder is
   merged from the home folder and compared file by file with a single run of the same job.
2. A task that runs out of time says to submit it again with a longer --time, and the command its log gives
   finishes it, continuing where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import PROMPTS

from gpi_desktop.core.model.tinymodel import TinySpec, build_tiny_model

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        os.environ.get("GPI_TEST_SLURM") != "1",
        reason="needs a running one-node SLURM cluster (.ci/slurm-up.sh) and GPI_TEST_SLURM=1",
    ),
]

REPO = Path(__file__).resolve().parents[1]
USER = os.environ.get("GPI_TEST_SLURM_USER", "gpi-slurm-ci")
TASKS = 3
REQUEUED = 2
TIME_LIMITED_REPEATS = 6  # x 8 prompts


def _user_env() -> dict[str, str]:
    import pwd

    home = pwd.getpwnam(USER).pw_dir
    return {
        "HOME": home,
        "USER": USER,
        "LOGNAME": USER,
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "TOKENIZERS_PARALLELISM": "false",
        "LANG": "C.UTF-8",
    }


def as_user(command: list[str], *, cwd: Path | str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = _user_env()
    return subprocess.run(
        ["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *command],
        cwd=cwd or env["HOME"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _wait(what: str, condition, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{_diagnostics()}")


def _diagnostics() -> str:
    out = []
    for command in (["squeue", "-a", "-o", "%i %T %r %S"], ["scontrol", "show", "job"]):
        done = subprocess.run(command, capture_output=True, text=True)
        out.append(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}")
    return "\n".join(out)


def _task_state(job_id: str, task: int) -> str:
    done = subprocess.run(["squeue", "-h", "-j", f"{job_id}_{task}", "-o", "%T"], capture_output=True, text=True)
    return done.stdout.strip()


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def base() -> Path:
    """A folder the user owns (tmp_path is root's, 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="gpi-slurm-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _prepare(base: Path, name: str, rows: list[str], *flags: str) -> Path:
    """`gpi-desktop prepare` as the user, into base/name; the prompts file is the user's."""
    check = as_user([sys.executable, "-c", "import gpi_desktop, torch"])
    assert check.returncode == 0, (
        f"the user {USER} cannot run this Python ({sys.executable}): its folders must be "
        f"readable by others\n{check.stderr[-2000:]}"
    )
    model = base / "model"
    if not model.exists():
        build_tiny_model(model, TinySpec(architecture="llama", seed=1, eos_boost=0.0))
    prompts = base / f"{name}.csv"
    pd.DataFrame({"text": rows}).to_csv(prompts, index=False)
    subprocess.run(["chown", "-R", f"{USER}:", str(base)], check=True)
    done = as_user(
        [
            sys.executable,
            "-m",
            "gpi_desktop",
            "prepare",
            "--model",
            str(model),
            "--prompts",
            str(prompts),
            "--column",
            "text",
            "--out",
            str(base / name),
            "--gpus",
            "0",
            "--cpus",
            "1",
            "--mem",
            "1G",
            "--job-name",
            "gpi-ci",
            "--command",
            f"{sys.executable} -m gpi_desktop",
            "--batch-size",
            "2",
            *flags,
        ]
    )
    assert done.returncode == 0, done.stderr
    assert "prompts go to the" in done.stdout and f"bash {base / name}/run.sbatch" in done.stdout, done.stdout
    return base / name


def _submit(job: Path, *options: str) -> str:
    """`bash job/run.sbatch [options]` from the user's home folder, as README.txt says; the array job's id."""
    submitted = as_user(["bash", str(job / "run.sbatch"), *options])
    assert submitted.returncode == 0, submitted.stderr
    return re.search(r"Submitted batch job (\d+)", submitted.stdout).group(1)


def _gone(job_id: str) -> bool:
    return not subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip()


def _exit_code(job_id: str) -> str:
    """SLURM's ExitCode of a finished job (kept by slurmctld for MinJobAge, 300 s by default; no accounting here)."""
    shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
    return re.search(r"ExitCode=(\S+)", shown).group(1)


def _log(job: Path, job_id: str, task: int) -> str:
    path = job / "logs" / f"gpi-ci-{job_id}_{task}.log"
    return path.read_text(errors="replace") if path.is_file() else ""


def test_a_prepared_job_survives_a_double_submission_and_a_requeue_and_merges_to_the_single_run(base):
    rows = [f"{text} (speech {i})" for i in range(15) for text in PROMPTS]  # enough work to requeue mid-task
    job = _prepare(base, "job", rows, "--tasks", str(TASKS), "--time", "00:20:00", "--max-new-tokens", "32")

    # Task 1 submitted twice, back to back: both start at once (two cores); the shard's hold decides.
    first, second = _submit(job, "--array=1"), _submit(job, "--array=1")
    _wait("both copies of task 1 to end", lambda: _gone(first) and _gone(second), timeout=600, every=2)
    copies = [_log(job, first, 1), _log(job, second, 1)]
    assert [_exit_code(first), _exit_code(second)] == ["0:0", "0:0"], copies
    assert sum("Done: shard 1/3" in text for text in copies) == 1, copies
    assert sum("already running elsewhere" in text or "already finished" in text for text in copies) == 1, copies

    job_id = _submit(job)
    journal = job / "shards" / str(REQUEUED) / ".gpi-run" / "records.jsonl"
    _wait(
        f"task {REQUEUED} to run and journal a prompt",
        lambda: _task_state(job_id, REQUEUED) == "RUNNING" and journal.is_file() and journal.read_bytes().count(b"\n"),
        timeout=300,
        every=0.5,
    )
    requeue = as_user(["scontrol", "requeue", f"{job_id}_{REQUEUED}"])
    assert requeue.returncode == 0, requeue.stderr
    _wait("the requeued task to be pending", lambda: _task_state(job_id, REQUEUED) == "PENDING", timeout=120)
    stopped = _log(job, job_id, REQUEUED)
    assert "SLURM requeued it" in stopped and "BeginTime" in stopped, stopped
    # What the log says to type to start it at once, instead of about 2 minutes pending (BeginTime).
    _wait(
        "its new start time",
        lambda: as_user(["scontrol", "update", f"JobId={job_id}_{REQUEUED}", "StartTime=now"]).returncode == 0,
        timeout=60,
    )
    _wait("every task to finish", lambda: _gone(job_id), timeout=900, every=2)

    logs = {p.name: p.read_text(errors="replace") for p in (job / "logs").glob(f"gpi-ci-{job_id}_*.log")}
    assert sorted(logs) == [f"gpi-ci-{job_id}_{i}.log" for i in range(1, TASKS + 1)], _diagnostics()
    requeued_log = logs[f"gpi-ci-{job_id}_{REQUEUED}.log"]
    assert "restart 0" in requeued_log and "restart 1" in requeued_log, requeued_log
    assert "continues where it stopped" in requeued_log and "Resuming:" in requeued_log, requeued_log
    assert "already finished" in logs[f"gpi-ci-{job_id}_1.log"]
    for i in range(2, TASKS + 1):
        assert f"Done: shard {i}/{TASKS}" in logs[f"gpi-ci-{job_id}_{i}.log"]

    merged = base / "merged"
    # From the home folder, as README.txt's step 6 says: the job folder, not a shell pattern.
    done = as_user([sys.executable, "-m", "gpi_desktop", "merge", str(job), "--out", str(merged)])
    assert done.returncode == 0, done.stderr
    single = base / "single"
    # The same job in one process on this machine, with the tasks' one core (SLURM_CPUS_PER_TASK=1 caps the
    # threads as in a task): the one-machine run the merge must equal.
    done = as_user(
        [
            "env",
            "SLURM_CPUS_PER_TASK=1",
            sys.executable,
            "-m",
            "gpi_desktop",
            "run",
            "--job",
            str(job / "job.json"),
            "--out",
            str(single),
            "--quiet",
        ],
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    got, want = _digest(merged), _digest(single)
    assert {k: v for k, v in got.items() if k != "manifest.json"} == {
        k: v for k, v in want.items() if k != "manifest.json"
    }
    m = json.loads((merged / "manifest.json").read_text())
    s = json.loads((single / "manifest.json").read_text())
    assert m.pop("sharded")["devices"] == ["cpu"] * TASKS
    assert m == s


def _task_program(job: Path) -> int:
    """The pid of the program a task of `job` runs (its working folder is the job folder)."""
    found = subprocess.run(
        ["pgrep", "-u", USER, "-f", "gpi_desktop run --job job.json"], capture_output=True, text=True
    ).stdout.split()
    pids = [int(pid) for pid in found if Path(f"/proc/{pid}/cwd").resolve() == job.resolve()]
    assert len(pids) == 1, (found, _diagnostics())
    return pids[0]


def test_a_task_out_of_time_says_to_resubmit_with_a_longer_time_and_that_command_finishes_it(base):
    rows = [f"{text} (speech {i})" for i in range(TIME_LIMITED_REPEATS) for text in PROMPTS]
    job = _prepare(base, "slow", rows, "--tasks", "1", "--time", "1", "--max-new-tokens", "64")
    job_id = _submit(job)
    journal = job / "shards" / "1" / ".gpi-run" / "records.jsonl"
    _wait(
        "the task to journal a prompt",
        lambda: journal.is_file() and journal.read_bytes().count(b"\n"),
        timeout=300,
        every=0.2,
    )
    # A task slower than its limit, on any machine: its program is frozen until SLURM's time limit strikes
    # (slurmstepd logs it, then sends SIGTERM), and thawed to stop as a slow task would, within KillWait.
    program = _task_program(job)
    os.kill(program, signal.SIGSTOP)
    try:
        _wait("SLURM's time limit", lambda: "DUE TO TIME LIMIT" in _log(job, job_id, 1), timeout=240, every=1)
    finally:
        os.kill(program, signal.SIGCONT)
    _wait("the task to stop", lambda: _gone(job_id), timeout=120, every=1)
    stopped = _log(job, job_id, 1)
    assert "It reached its time limit of 00:01:00 (TIMEOUT)" in stopped, stopped
    command = re.search(r"bash (\S+/run\.sbatch) --array=1 --time=00:02:00$", stopped.strip())
    assert command is not None and Path(command.group(1)) == job / "run.sbatch", stopped
    kept = journal.read_bytes().count(b"\n")
    assert 0 < kept < len(rows), kept

    # The log's command, from the home folder (with more time than it suggests, for a loaded test machine).
    again = _submit(job, "--array=1", "--time=00:15:00")
    _wait("the resubmitted task to finish", lambda: _gone(again), timeout=900, every=2)
    resumed = _log(job, again, 1)
    assert f"Resuming: {kept} of {len(rows)}" in resumed, resumed
    assert f"Done: shard 1/1: {len(rows)} of {len(rows)} rows" in resumed, resumed
    done = as_user([sys.executable, "-m", "gpi_desktop", "merge", str(job), "--out", str(base / "slow-export")])
    assert done.returncode == 0, done.stderr

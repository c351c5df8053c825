"""The job folder on a real one-node SLURM cluster, submitted by an ordinary user, as on a real cluster.

Runs only where .ci/slurm-up.sh started munged, slurmctld and slurmd on this machine and the tests run as root
(to act as that user), which `.ci/run` does:

    GPI_TEST_SLURM=1 GPI_TEST_SLURM_USER=<user> python -m pytest -m slurm tests/test_slurm.py

The folder is written by the dialog's own code (core.cluster.sbatch.write_job_folder), submitted by running its
run.sbatch from the user's home folder, one task is requeued while it runs (it continues where it stopped),
and the merged export is compared file by file with a single run of the same job.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import PROMPTS
from gpi_desktop.core.job.job import JobSpec
from gpi_desktop.core.cluster.sbatch import ClusterSettings, write_job_folder
from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings
from gpi_desktop.core.model.tinymodel import TinySpec, build_tiny_model

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(os.environ.get("GPI_TEST_SLURM") != "1",
                       reason="needs a running one-node SLURM cluster (.ci/slurm-up.sh) and GPI_TEST_SLURM=1"),
]

REPO = Path(__file__).resolve().parents[1]
USER = os.environ.get("GPI_TEST_SLURM_USER", "gpi-slurm-ci")
TASKS = 3
REQUEUED = 2


def _user_env() -> dict[str, str]:
    import pwd

    home = pwd.getpwnam(USER).pw_dir
    return {"HOME": home, "USER": USER, "LOGNAME": USER, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", "LANG": "C.UTF-8"}


def as_user(command: list[str], *, cwd: Path | str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = _user_env()
    return subprocess.run(["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                           *command], cwd=cwd or env["HOME"], capture_output=True, text=True, timeout=timeout)


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
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def base() -> Path:
    """A folder the user owns (tmp_path is root's, 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="gpi-slurm-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_job_folder_runs_on_slurm_survives_a_requeue_and_merges_to_the_single_machine_files(base):
    check = as_user([sys.executable, "-c", "import gpi_desktop, torch"])
    assert check.returncode == 0, (f"the user {USER} cannot run this Python ({sys.executable}): its folders must be "
                                   f"readable by others\n{check.stderr[-2000:]}")
    model = build_tiny_model(base / "model", TinySpec(architecture="llama", seed=1, eos_boost=0.0))
    prompts = base / "speeches.csv"
    rows = [f"{text} (speech {i})" for i in range(15) for text in PROMPTS]  # enough work to requeue mid-task
    pd.DataFrame({"text": rows}).to_csv(prompts, index=False)
    spec = JobSpec(prompts, "text", RunSettings(model=str(model), max_new_tokens=32, batch_size="2"),
                   ExportSettings())
    cluster = ClusterSettings(shards=TASKS, gpus_per_task=0, cpus_per_task=1, memory="1G", time="00:20:00",
                              job_name="gpi-ci", command=f"{sys.executable} -m gpi_desktop")
    job = write_job_folder(base / "job", spec, cluster)
    subprocess.run(["chown", "-R", f"{USER}:", str(base)], check=True)

    # Submitted from the user's home folder, by running the script (it calls sbatch with absolute paths).
    submitted = as_user(["bash", str(job.script)])
    assert submitted.returncode == 0, submitted.stderr
    job_id = re.search(r"Submitted batch job (\d+)", submitted.stdout).group(1)

    journal = job.folder / "shards" / str(REQUEUED) / ".gpi-run" / "records.jsonl"
    _wait(f"task {REQUEUED} to run and journal a prompt",
          lambda: _task_state(job_id, REQUEUED) == "RUNNING" and journal.is_file() and journal.read_bytes().count(b"\n"),
          timeout=300, every=0.5)
    requeue = as_user(["scontrol", "requeue", f"{job_id}_{REQUEUED}"])
    assert requeue.returncode == 0, requeue.stderr
    # SLURM holds a requeued job back for a while (the credential lifetime); let it start again at once.
    _wait("the requeued task to be pending", lambda: _task_state(job_id, REQUEUED) == "PENDING", timeout=120)
    _wait("its new start time", lambda: as_user(["scontrol", "update", f"JobId={job_id}_{REQUEUED}",
                                                 "StartTime=now"]).returncode == 0, timeout=60)
    _wait("every task to finish", lambda: not subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True,
                                                             text=True).stdout.strip(), timeout=900, every=2)

    logs = {p.name: p.read_text(errors="replace") for p in (job.folder / "logs").glob("gpi-ci-*.log")}
    assert sorted(logs) == [f"gpi-ci-{job_id}_{i}.log" for i in range(1, TASKS + 1)], _diagnostics()
    requeued_log = logs[f"gpi-ci-{job_id}_{REQUEUED}.log"]
    assert "restart 0" in requeued_log and "restart 1" in requeued_log, requeued_log
    assert "continues where it stopped" in requeued_log and "Resuming:" in requeued_log, requeued_log
    for name, text in logs.items():
        assert "Done: shard" in text, f"{name}:\n{text}"

    merged = base / "merged"
    done = as_user([sys.executable, "-m", "gpi_desktop", "merge", str(job.folder / "shards"), "--out", str(merged)])
    assert done.returncode == 0, done.stderr
    single = base / "single"
    # The same job in one process on this machine, with the tasks' one core (SLURM_CPUS_PER_TASK=1 caps the
    # threads as in a task): the one-machine run the merge must equal.
    done = as_user(["env", "SLURM_CPUS_PER_TASK=1", sys.executable, "-m", "gpi_desktop", "run", "--job",
                    str(job.job_file), "--out", str(single), "--quiet"], timeout=900)
    assert done.returncode == 0, done.stderr
    got, want = _digest(merged), _digest(single)
    assert {k: v for k, v in got.items() if k != "manifest.json"} == \
        {k: v for k, v in want.items() if k != "manifest.json"}
    m = json.loads((merged / "manifest.json").read_text())
    s = json.loads((single / "manifest.json").read_text())
    assert m.pop("sharded")["devices"] == ["cpu"] * TASKS
    assert m == s

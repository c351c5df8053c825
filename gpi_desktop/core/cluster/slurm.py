"""A cluster task's SLURM state, from SLURM's environment variables, and what to do next in SLURM's own terms.

SLURM stops a task with SIGTERM for four reasons that need different words:

- `scontrol requeue`, a preemption or a node failure: SLURM starts the task again by itself, after about two
  minutes pending with the reason BeginTime; it continues where it stopped.
- `scancel`: SLURM never starts it again (state CANCELLED, Restarts unchanged); the user submits it again.
- the time limit: SLURM never starts it again either (state TIMEOUT); it needs a longer --time.

The environment says which task this is (SLURM_ARRAY_JOB_ID, SLURM_ARRAY_TASK_ID) and how often it was restarted
before (SLURM_RESTART_COUNT, absent before the first restart); only the controller knows why it stops now, so
`scontrol show job` is asked once, at the stop: a requeue has already raised Restarts, a time limit says
Reason=TimeLimit (seen on slurm-wlm 22.05: a cancel shows JobState=COMPLETING with neither).
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

log = logging.getLogger(__name__)

_FIELD = re.compile(r"(\w+)=(\S*)")
SCONTROL_SECONDS = 10  # the controller answers in well under a second; never hold a stopping task long


class StopCause(Enum):
    REQUEUED = "requeued"  # SLURM starts it again by itself
    TIME_LIMIT = "time limit"  # TIMEOUT: never started again
    CANCELLED = "cancelled"  # scancel (or a preemption that cancels): never started again
    UNKNOWN = "unknown"  # the controller did not answer


@dataclass(frozen=True)
class SlurmTask:
    """This process as one task of a SLURM array job, as SLURM's environment variables describe it."""

    job_id: str  # SLURM_JOB_ID: this task's own job id
    array_job_id: str  # SLURM_ARRAY_JOB_ID: the submission's id, as squeue and the log names show it
    task_id: str  # SLURM_ARRAY_TASK_ID
    restarts: int  # SLURM_RESTART_COUNT: how often SLURM started this task again before this run

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SlurmTask | None:
        job = environ.get("SLURM_JOB_ID", "").strip()
        if not job:
            return None
        restarts = environ.get("SLURM_RESTART_COUNT", "").strip()
        return cls(
            job,
            environ.get("SLURM_ARRAY_JOB_ID", "").strip() or job,
            environ.get("SLURM_ARRAY_TASK_ID", "").strip(),
            int(restarts) if restarts.isdigit() else 0,
        )

    @property
    def name(self) -> str:
        """The task as squeue and scontrol name it: 123_4 (or the job id of a task outside an array)."""
        return f"{self.array_job_id}_{self.task_id}" if self.task_id else self.job_id


@dataclass(frozen=True)
class JobRecord:
    """The few fields of `scontrol -o show job` that say why a task stops."""

    state: str
    reason: str
    restarts: int
    time_limit: str

    @classmethod
    def parse(cls, text: str) -> JobRecord | None:
        fields = dict(_FIELD.findall(text.splitlines()[0] if text.strip() else ""))
        if "JobState" not in fields:
            return None
        restarts = fields.get("Restarts", "0")
        return cls(
            fields["JobState"],
            fields.get("Reason", ""),
            int(restarts) if restarts.isdigit() else 0,
            fields.get("TimeLimit", ""),
        )


def stop_cause(task: SlurmTask, record: JobRecord | None) -> StopCause:
    if record is None:
        return StopCause.UNKNOWN
    if record.state == "TIMEOUT" or record.reason == "TimeLimit":
        return StopCause.TIME_LIMIT
    if record.restarts > task.restarts or record.state in ("REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "PENDING"):
        return StopCause.REQUEUED
    return StopCause.CANCELLED


def ask_controller(task: SlurmTask) -> JobRecord | None:
    """`scontrol -o show job` for this task; None when scontrol is missing or does not answer in time."""
    try:
        done = subprocess.run(
            ["scontrol", "-o", "show", "job", task.name],
            capture_output=True,
            text=True,
            timeout=SCONTROL_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        log.info("scontrol show job %s: %s", task.name, error)
        return None
    return JobRecord.parse(done.stdout) if done.returncode == 0 else None


def resubmit_command(script: Path, task: SlurmTask, *, time_limit: str = "") -> str:
    """The command that submits this one task again, from any folder (the script's absolute path)."""
    longer = f" --time={time_limit}" if time_limit else ""
    return f"bash {script} --array={task.task_id or 1}{longer}"


def stopped_sentence(task: SlurmTask, record: JobRecord | None, script: Path | None) -> str:
    """What happens next after SLURM stopped this task, and what to type where the user must act."""
    from gpi_desktop.core.cluster.sbatch import SCRIPT_NAME, longer_time

    where = script or Path(SCRIPT_NAME)
    cause = stop_cause(task, record)
    kept = f"Stopped task {task.name}; its finished prompts are kept."
    if cause is StopCause.REQUEUED:
        return (
            f"{kept} SLURM requeued it: it waits about 2 minutes as pending (squeue --me shows the reason "
            f"BeginTime), then continues where it stopped. To start it at once: scontrol update "
            f"JobId={task.name} StartTime=now"
        )
    if cause is StopCause.TIME_LIMIT:
        limit = record.time_limit if record is not None else ""
        longer = longer_time(limit) if limit and limit[:1].isdigit() else "HH:MM:SS"
        now = f" of {limit}" if limit else ""
        return (
            f"{kept} It reached its time limit{now} (TIMEOUT), and SLURM does not start it again: submit it "
            f"again with a longer --time (or raise #SBATCH --time in {SCRIPT_NAME}); it continues where it "
            f"stopped: {resubmit_command(where, task, time_limit=longer)}"
        )
    if cause is StopCause.CANCELLED:
        return (
            f"{kept} It was cancelled (scancel, or a preemption that cancels), and SLURM does not start it "
            f"again: submit it again, and it continues where it stopped: {resubmit_command(where, task)}"
        )
    return (
        f"{kept} If SLURM requeues it, it continues where it stopped by itself; after scancel or its time limit "
        f"submit it again: {resubmit_command(where, task)} (with a longer --time if it ran out of time)."
    )

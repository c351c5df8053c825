"""`gpi-desktop run`: one job headless, from the flags or a job file (--job), whole or one shard of it (--shard I/N).

One command for the single machine and the cluster: a shard differs only in the rows
it runs, the folder it writes (a shard folder instead of the export) and what it says.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from gpi_desktop.cli.job_flags import add_job_arguments, spec_from_args
from gpi_desktop.cli.state import CliState, stop_on_signals
from gpi_desktop.core.cluster.model_pin import check_task_model
from gpi_desktop.core.cluster.sbatch import RUN_OPTIONS_LINE_INSIST, SCRIPT_NAME
from gpi_desktop.core.cluster.shards import Shard, load_job_file
from gpi_desktop.core.files.prompts import duplicate_of
from gpi_desktop.core.hub.cache import hub_cache_dir
from gpi_desktop.core.hub.secrets import find_token
from gpi_desktop.core.job.job import JobSpec, MemoryCheck, RunOutcome, load_prompts
from gpi_desktop.core.job.journals import ResumePolicy
from gpi_desktop.core.model.models import resolve_source
from gpi_desktop.core.session.job_session import Claim, JobSession
from gpi_desktop.core.vocabulary.errors import (
    EXIT_OK,
    AccessError,
    MemoryFitError,
    OutputFolderError,
    RunBusyError,
    SettingsError,
)
from gpi_desktop.core.vocabulary.formatting import human_duration

# `run` flags that a job file already decides; given together with --job they would be silently ignored.
JOB_DEFINED_FLAGS = {
    "model": "--model", "prompts": "--prompts", "column": "--column", "task": "--task", "pooling": "--pooling",
    "max_new_tokens": "--max-new-tokens", "prefix": "--prefix", "save_name": "--save-name",
    "batch_size": "--batch-size", "dtype": "--dtype", "device": "--device", "template": "--template",
    "one_at_a_time": "--one-at-a-time", "revision": "--revision", "quantization": "--quantization",
    "template_option": "--template-option", "template_date": "--template-date",
    "generation_option": "--generation-option", "sheet": "--sheet",
}  # fmt: skip


def add_run_parser(sub) -> None:
    run = sub.add_parser("run", help="run a job headless (servers, clusters)")
    add_job_arguments(run)
    run.add_argument(
        "--ignore-memory-check",
        action="store_true",
        help="run even when the memory estimate says the model will not fit (it may run out of memory)",
    )
    run.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    run.add_argument("--overwrite", action="store_true", help="replace an earlier export or run in --out")
    run.add_argument("--quiet", action="store_true", help="print only errors and the final line")
    run.add_argument(
        "--shard",
        metavar="I/N",
        help="run only share I of N (I counts from 1) into --out, as one task of a cluster array job; "
        "merge the shard folders with `gpi-desktop merge`",
    )
    run.add_argument(
        "--job",
        metavar="FILE",
        help='take the prompts, model and settings from a job.json written by "Prepare for a cluster"',
    )
    # Read after every flag exists, so that --job can tell a flag given from its default.
    run.set_defaults(handler=cmd_run, _job_flag_defaults={dest: run.get_default(dest) for dest in JOB_DEFINED_FLAGS})


def wants_cluster_run(args) -> bool:
    return bool(getattr(args, "shard", None) or getattr(args, "job", None))


def spec_for(args) -> JobSpec:
    """The job of a `run`: from --job FILE, or from the run flags."""
    if not getattr(args, "job", None):
        return spec_from_args(args)
    defaults = getattr(args, "_job_flag_defaults", {})
    given = [
        flag for dest, flag in JOB_DEFINED_FLAGS.items() if dest in defaults and getattr(args, dest) != defaults[dest]
    ]
    if given:
        raise SettingsError(
            f"--job already holds the prompts, model and settings, so {', '.join(given)} cannot be "
            "given with it: leave them out, or edit the job folder's job.json."
        )
    if not args.out:
        raise OutputFolderError("Give the output folder with --out FOLDER.")
    return load_job_file(args.job).spec


def resume_policy(args) -> ResumePolicy:
    """What --resume and --overwrite ask of an unfinished run in --out (neither: it is kept and the run refused)."""
    if args.resume and args.overwrite:
        raise OutputFolderError("Choose either --resume (continue) or --overwrite (start over), not both.")
    if args.resume:
        return ResumePolicy.CONTINUE
    return ResumePolicy.REPLACE_STALE if args.overwrite else ResumePolicy.REFUSE


def say_sheet(table) -> None:
    """Say which sheet of a workbook of several is read, and how to read another."""
    described = table.describe_sheets()
    if described:
        print(f"gpi-desktop: note: {described}; choose another with --sheet NAME.", file=sys.stderr, flush=True)


def say_duplicate_column(table) -> None:
    """Say which copy is used when the chosen column's name appears more than once in the header."""
    shared = duplicate_of(table.column, table.duplicates)
    if shared is not None:
        print(
            f"gpi-desktop: note: {shared.describe(Path(table.path).name)}; using '{table.column}'.",
            file=sys.stderr,
            flush=True,
        )


def cmd_run(args) -> int:
    """`run`: a whole job (from the flags or --job) into an export folder, or one shard of it (--shard) into a shard folder."""
    shard = Shard.parse(args.shard) if getattr(args, "shard", None) else None
    spec = spec_for(args)
    out = Path(args.out)
    # Everything the user can get wrong is checked before anything is written.
    table = load_prompts(spec)
    say_sheet(table)
    say_duplicate_column(table)
    policy = resume_policy(args)
    source = resolve_source(spec.settings.model)
    session = JobSession.in_output_folder(spec, table, out, shard=shard)
    with ExitStack() as held:
        # The session holds --out from here to the end of the export (core/session/job_session.py).
        claim = _claim(held, session, policy)
        if claim is None:
            return EXIT_OK  # a shard finished already, or another copy of this task is running it
        if wants_cluster_run(args):
            require_gpu(spec)
        if not source.is_local:
            session = session.with_run(token=find_token().token)
        if shard is not None and getattr(args, "job", None):
            # Before the model loads: every task of the job runs the model version the first one ran.
            session = session.with_run(spec=check_task_model(Path(args.job).parent, spec, shard))
        state = CliState(quiet=args.quiet)
        started = time.monotonic()
        outcome = _run_and_write(args, session, claim, state)
    if outcome is None:
        return EXIT_OK
    n = len(outcome.results)
    limit = sum(r.hit_limit for r in outcome.results) if shard is None else 0
    what = f"shard {shard.label}: {n} of {len(outcome.table)} rows" if shard else f"{n} texts and hidden states"
    print(
        f"Done: {what} (width {outcome.model_info.hidden_size}) in {out} after "
        f"{human_duration(time.monotonic() - started)}"
        + (f"; {limit} stopped at the token limit" if limit else "")
        + "."
    )
    return EXIT_OK


def _claim(held: ExitStack, session: JobSession, policy: ResumePolicy) -> Claim | None:
    """The session's claim of --out, held until `held` closes; None when a shard has nothing to do here.

    For a shard the hold, not the files, decides between two copies of one task (a second submission, a
    requeue racing the first): whatever the timing, exactly one runs and the other says so and ends with exit 0.
    """
    shard, out = session.shard, session.output
    try:
        claim = held.enter_context(session.claim(policy))
    except RunBusyError:
        if shard is None:
            raise
        print(f"Shard {shard.label} is already running elsewhere (into {out}): nothing to do here.")
        return None
    if shard is not None and claim.shard_finished:  # only a shard can be finished already
        print(f"Shard {shard.label} in {out} is already finished.")
        return None
    if shard is not None and claim.continues:
        print(f"Shard {shard.label} continues where it stopped.", flush=True)
    return claim


def _run_and_write(args, session: JobSession, claim: Claim, state: CliState) -> RunOutcome | None:
    """Run the job and write its export (or shard folder); the outcome, or None when another task runs this shard."""
    shard, out = session.shard, session.output
    memory = MemoryCheck.RUN_ANYWAY if args.ignore_memory_check else MemoryCheck.REFUSE
    # SLURM ends a preempted or timed-out task with SIGTERM: it stops like Ctrl-C, keeping the journal to resume.
    with stop_on_signals(state):
        try:
            outcome = session.run(state, claim.policy, memory)
        except AccessError as error:
            if shard is None:
                raise
            raise _in_a_cluster_task(error, session.spec) from error
        except MemoryFitError as error:
            if shard is None or not os.environ.get("SLURM_JOB_ID"):
                raise
            raise _insist_in_the_script(error) from error
        except RunBusyError:
            if shard is None:
                raise
            # A second submission's task, or a requeue while the first still runs: the other one finishes the shard.
            print(f"Shard {shard.label} is already running elsewhere (into {out}): nothing to do here.")
            return None
        session.export(outcome, state, replace=claim.replace_export)
    return outcome


def require_gpu(spec: JobSpec) -> None:
    """A job that asked for a GPU (device cuda, as a GPU cluster job is) stops loudly without one.

    Running on the CPU instead would finish, hours later, with shards whose
    greedy texts may differ from the GPU shards'.
    """
    if spec.settings.device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise SettingsError(
            "This job asks for a GPU (device cuda in job.json), but no NVIDIA GPU is usable on this machine, so it "
            "stops rather than run on the CPU: check the GPU line (--gres or --gpus) in run.sbatch, and that the "
            "setup lines make CUDA available (for example module load cuda, and a torch built for CUDA)."
        )


def _in_a_cluster_task(error: AccessError, spec: JobSpec) -> AccessError:
    """Tasks run offline (run.sbatch sets HF_HUB_OFFLINE=1): a model missing from the cache is downloaded first."""
    if error.kind != "offline":
        return error
    revision = spec.settings.revision
    return AccessError(
        f"The model {spec.settings.model}{f' at commit {revision}' if revision else ''} is not fully downloaded in "
        f"the model cache this task uses ({hub_cache_dir()}), and tasks do not download: download it on the login "
        "machine as step 2 of the job folder's README.txt says (with the same HF_HOME), then submit again.",
        kind="offline",
        url=error.url,
    )


def _insist_in_the_script(error: MemoryFitError) -> MemoryFitError:
    """A SLURM task runs the command run.sbatch gives: to insist, the user changes the script, not a command."""
    return MemoryFitError(
        f"{error.verdict} To run anyway, write {RUN_OPTIONS_LINE_INSIST} in {SCRIPT_NAME} (it "
        "may then run out of memory) and submit it again.",
        verdict=error.verdict,
    )


def stopped_message(args) -> str:
    """What to do after a stop; inside a SLURM task, in SLURM's terms (requeued, cancelled, out of time)."""
    from gpi_desktop.core.cluster import slurm

    task = slurm.SlurmTask.from_environ(os.environ) if getattr(args, "shard", None) else None
    if task is not None:
        from gpi_desktop.core.cluster.sbatch import SCRIPT_NAME

        script = Path(args.job).resolve().parent / SCRIPT_NAME if getattr(args, "job", None) else None
        return slurm.stopped_sentence(task, slurm.ask_controller(task), script)
    return "Stopped. Finished prompts are kept; run the same command with --resume to continue."

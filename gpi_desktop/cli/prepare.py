"""`gpi-desktop prepare`: the job folder for a SLURM cluster, from a login node without a display.

The same folder, checks and warnings as the window's "Prepare for a cluster" (both call
core.cluster.sbatch.write_job_folder, whose review_job says how the prompts go to the tasks).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpi_desktop.cli.job_flags import add_job_arguments, spec_from_args
from gpi_desktop.core.cluster.sbatch import GPU_OPTIONS, ClusterSettings
from gpi_desktop.core.vocabulary.errors import EXIT_OK, SettingsError

_DEFAULTS = ClusterSettings()


def add_prepare_parser(sub) -> None:
    prepare = sub.add_parser(
        "prepare",
        help="write a job folder for a SLURM cluster (run.sbatch, README.txt, job.json, the prompts)",
        description="Write a new job folder that a SLURM array job runs, one shard of the prompts per task, as the "
        'window\'s "Prepare for a cluster" does; then follow its README.txt (copy, download the model, '
        "check the #SBATCH lines, submit, merge).",
    )
    add_job_arguments(prepare, out_help="the new job folder to write (must not exist, or be empty)")
    _add_cluster_arguments(prepare)
    prepare.add_argument(
        "--no-pin",
        action="store_true",
        help="do not resolve a hub model's revision to a commit now (no network); the first task "
        "pins the commit it finds in its cache, and the others must match",
    )
    prepare.set_defaults(handler=cmd_prepare)


def _add_cluster_arguments(prepare: argparse.ArgumentParser) -> None:
    """The dialog's cluster fields, as flags with the dialog's defaults."""
    c = _DEFAULTS
    prepare.add_argument("--tasks", type=int, default=c.shards, help=f"how many tasks share the prompts ({c.shards})")
    prepare.add_argument(
        "--gpus",
        type=int,
        default=c.gpus_per_task,
        help=f"GPUs per task ({c.gpus_per_task}); 0 runs on the CPU only (a CPU-only partition)",
    )
    prepare.add_argument("--gpu-type", default="", help="a GPU type such as a100 (--gres=gpu:a100:N), if required")
    prepare.add_argument(
        "--gpu-option",
        choices=list(GPU_OPTIONS),
        default=c.gpu_option,
        help="ask for GPUs with --gres=gpu:N (most clusters) or --gpus=N",
    )
    prepare.add_argument("--time", default=c.time, help=f"time limit per task, SLURM's form ({c.time})")
    prepare.add_argument("--mem", default=c.memory, help=f"memory per task, SLURM's form ({c.memory})")
    prepare.add_argument("--cpus", type=int, default=c.cpus_per_task, help=f"CPU cores per task ({c.cpus_per_task})")
    prepare.add_argument(
        "--model-cache", default="", help="HF_HOME on the cluster (default: the cluster's ~/.cache/huggingface)"
    )
    prepare.add_argument("--partition", default="")
    prepare.add_argument("--account", default="")
    prepare.add_argument("--qos", default="")
    prepare.add_argument(
        "--max-running",
        type=int,
        default=0,
        help="at most this many tasks at once (--array=1-N%%K); 0: as many as SLURM allows",
    )
    prepare.add_argument("--job-name", default=c.job_name)
    prepare.add_argument(
        "--command",
        default=c.command,
        help=f'how the cluster starts GPI Desktop ({c.command}; e.g. "python -m gpi_desktop")',
    )
    prepare.add_argument(
        "--setup",
        action="append",
        default=[],
        metavar="LINE",
        help='a shell line each task runs first, e.g. "module load cuda"; repeatable',
    )


def cluster_from_args(args) -> ClusterSettings:
    if args.device not in ("auto", "cuda" if args.gpus > 0 else "cpu"):
        raise SettingsError(
            f"A cluster job runs on the device its tasks ask for: --gpus {args.gpus} means "
            f"{'cuda' if args.gpus > 0 else 'cpu'}, not --device {args.device}; leave --device out."
        )
    return ClusterSettings(
        shards=args.tasks,
        gpus_per_task=args.gpus,
        time=args.time,
        memory=args.mem,
        cpus_per_task=args.cpus,
        model_cache=args.model_cache,
        partition=args.partition,
        account=args.account,
        qos=args.qos,
        gpu_type=args.gpu_type,
        gpu_option=args.gpu_option,
        array_throttle=args.max_running,
        job_name=args.job_name,
        command=args.command,
        setup="\n".join(args.setup),
    ).validate()


def cmd_prepare(args) -> int:
    from gpi_desktop.core.cluster.sbatch import SCRIPT_NAME, write_job_folder
    from gpi_desktop.core.hub.secrets import find_token
    from gpi_desktop.core.model.models import resolve_source

    spec = spec_from_args(args)
    cluster = cluster_from_args(args)
    token = None
    if not args.no_pin and not resolve_source(spec.settings.model).is_local:
        print("Pinning the model's version (this may ask the Hub)…", file=sys.stderr, flush=True)
        token = find_token().token
    job = write_job_folder(Path(args.out), spec, cluster, token=token, pin=not args.no_pin)
    review = job.review
    for warning in review.warnings if review is not None else ():
        print(f"Warning: {warning}")
    if review is not None:
        print(review.unit_sentence)
    if job.revision:
        print(f"Model version pinned: {spec.settings.model} at commit {job.revision}.")
    print(
        f"Wrote the job folder {job.folder}: follow its {job.readme.name} (copy it to the cluster, download the "
        f"model, check the #SBATCH lines, then submit with: bash {job.folder}/{SCRIPT_NAME})."
    )
    return EXIT_OK

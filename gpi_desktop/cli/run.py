"""The command line's cluster part: `run --shard I/N`, `run --job FILE` and `merge DIR... --out OUT`."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from gpi_desktop.core.vocabulary.errors import EXIT_OK, AccessError, OutputFolderError, RunBusyError, SettingsError

# `run` flags that a job file already decides; given together with --job they would be silently ignored.
JOB_DEFINED_FLAGS = {
    "model": "--model", "prompts": "--prompts", "column": "--column", "task": "--task", "pooling": "--pooling",
    "max_new_tokens": "--max-new-tokens", "prefix": "--prefix", "save_name": "--save-name",
    "batch_size": "--batch-size", "dtype": "--dtype", "device": "--device", "template": "--template",
    "one_at_a_time": "--one-at-a-time", "revision": "--revision", "quantization": "--quantization",
    "template_option": "--template-option", "template_date": "--template-date",
    "generation_option": "--generation-option",
}  # fmt: skip


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """Add --shard and --job to `run` (called after the run flags exist, so their defaults are known)."""
    run.add_argument("--shard", metavar="I/N",
                     help="run only share I of N (I counts from 1) into --out, as one task of a cluster array job; "
                          "merge the shard folders with `gpi-desktop merge`")
    run.add_argument("--job", metavar="FILE",
                     help="take the prompts, model and settings from a job.json written by \"Prepare for a cluster\"")
    run.set_defaults(_job_flag_defaults={dest: run.get_default(dest) for dest in JOB_DEFINED_FLAGS})


def add_merge_parser(sub) -> None:
    merge = sub.add_parser("merge", help="merge the shard folders of a cluster job into one export folder",
                           description="Check that the shard folders come from one job and hold every row once, "
                                       "then write one export folder as a single-machine run writes it.")
    merge.add_argument("dirs", nargs="+", metavar="DIR",
                       help="shard folders (for example shards/*), or the job folder that holds them")
    merge.add_argument("--out", required=True, help="the folder for the merged export")
    merge.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    merge.add_argument("--quiet", action="store_true", help="print only errors and the final line")
    merge.add_argument("--allow-mixed-devices", action="store_true",
                       help="merge shards that ran on different devices or precisions (greedy texts can differ "
                            "between them; the manifest records each shard's device)")


def wants_cluster_run(args) -> bool:
    return bool(getattr(args, "shard", None) or getattr(args, "job", None))


def spec_for(args):
    """The job of a `run`: from --job FILE, or from the run flags."""
    if not getattr(args, "job", None):
        from gpi_desktop.cli.entry import spec_from_args

        return spec_from_args(args)
    from gpi_desktop.core.cluster.shards import load_job_file

    defaults = getattr(args, "_job_flag_defaults", {})
    given = [flag for dest, flag in JOB_DEFINED_FLAGS.items() if dest in defaults and getattr(args, dest) != defaults[dest]]
    if given:
        raise SettingsError(f"--job already holds the prompts, model and settings, so {', '.join(given)} cannot be "
                            "given with it: leave them out, or edit the job folder's job.json.")
    if not args.out:
        raise OutputFolderError("Give the output folder with --out FOLDER.")
    return load_job_file(args.job).spec


def cmd_run_cluster(args) -> int:
    """`run` with --job and/or --shard: a whole job from a job file, or one shard of it into a shard folder."""
    from gpi_desktop.cli.entry import (
        CliState,
        OutFolderClaim,
        claim_out_folder,
        format_duration,
        prepare_out_folder,
        say_duplicate_column,
        stop_on_signals,
    )
    from gpi_desktop.core.files.folderhold import hold_folder
    from gpi_desktop.core.job.job import export_run, load_prompts, run_job
    from gpi_desktop.core.model.models import resolve_source
    from gpi_desktop.core.files.runstore import RUN_DIR_NAME, RunJournal
    from gpi_desktop.core.cluster.shards import SHARD_MANIFEST, Shard, write_shard_folder

    shard = Shard.parse(args.shard) if args.shard else None
    spec = spec_for(args)
    out = Path(args.out)
    table = load_prompts(spec)
    say_duplicate_column(table)
    source = resolve_source(spec.settings.model)
    journal = out / RUN_DIR_NAME
    if shard is not None and args.resume and not RunJournal.exists(journal) and (out / SHARD_MANIFEST).is_file():
        # A requeued task whose shard already finished: nothing to redo.
        print(f"Shard {shard.label} in {out} is already finished.")
        return EXIT_OK
    if shard is None:  # a whole job's export: checked again, and decided, under the folder's hold below
        prepare_out_folder(out, resume=args.resume, overwrite=args.overwrite, own_export=True)
    # A shard's journal shows the folder is this shard's: files of an interrupted shard write are rewritten.
    elif not (args.resume and RunJournal.exists(journal)):
        prepare_out_folder(out, resume=args.resume, overwrite=args.overwrite)
        if args.overwrite and journal.exists():
            shutil.rmtree(journal)
    require_gpu(spec)
    token = None
    if not source.is_local:
        from gpi_desktop.core.hub.secrets import find_token

        token = find_token().token
    state = CliState(quiet=args.quiet)
    with ExitStack() as held:
        if shard is None:
            held.enter_context(hold_folder(out))
            claim = claim_out_folder(out, spec, table, resume=args.resume, overwrite=args.overwrite)
        else:
            claim = OutFolderClaim(continue_journal=args.resume, replace_export=True)
        # SLURM ends a preempted or timed-out task with SIGTERM: it stops like Ctrl-C, keeping the journal to resume.
        held.enter_context(stop_on_signals(state))
        started = time.monotonic()
        try:
            outcome = run_job(spec, journal, state, resume=claim.continue_journal, token=token, shard=shard,
                              replace_stale=args.overwrite and shard is None,
                              ignore_memory_check=args.ignore_memory_check)
        except AccessError as error:
            raise _in_a_cluster_task(error, spec) if shard is not None else error
        except RunBusyError:
            if shard is None:
                raise
            # A second submission's task, or a requeue while the first still runs: the other one finishes the shard.
            print(f"Shard {shard.label} is already running elsewhere (into {out}): nothing to do here.")
            return EXIT_OK
        if shard is None:
            state.set_status("Writing the export folder…")
            export_run(outcome, out, overwrite=claim.replace_export, allow_names={RUN_DIR_NAME}, state=state)
        else:
            state.set_status("Writing the shard folder…")
            write_shard_folder(out, outcome, state=state)
        shutil.rmtree(journal, ignore_errors=True)
    n = len(outcome.results)
    what = f"shard {shard.label}: {n} of {len(outcome.table)} rows" if shard else f"{n} texts and hidden states"
    print(f"Done: {what} (width {outcome.model_info.hidden_size}) in {out} after "
          f"{format_duration(time.monotonic() - started)}.")
    return EXIT_OK


def require_gpu(spec) -> None:
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
            "setup lines make CUDA available (for example module load cuda, and a torch built for CUDA).")


def _in_a_cluster_task(error: AccessError, spec) -> AccessError:
    """Tasks run offline (run.sbatch sets HF_HUB_OFFLINE=1): a model missing from the cache is downloaded first."""
    if error.kind != "offline":
        return error
    from gpi_desktop.core.hub.hub import hub_cache_dir

    revision = spec.settings.revision
    return AccessError(
        f"The model {spec.settings.model}{f' at commit {revision}' if revision else ''} is not fully downloaded in "
        f"the model cache this task uses ({hub_cache_dir()}), and tasks do not download: download it on the login "
        "machine as step 2 of the job folder's README.txt says (with the same HF_HOME), then submit again.",
        kind="offline", url=error.url)


def stopped_message(args) -> str:
    """What to do after a stop; inside a SLURM task the requeue (or a resubmission) continues, not the user."""
    if getattr(args, "shard", None) and os.environ.get("SLURM_JOB_ID"):
        task = os.environ.get("SLURM_ARRAY_TASK_ID", "I")
        return (f"Stopped. Finished prompts are kept; when SLURM requeues this task it continues where it stopped "
                f"(or submit it again: sbatch --array={task} run.sbatch).")
    return "Stopped. Finished prompts are kept; run the same command with --resume to continue."


def run_merge(args) -> int:
    from gpi_desktop.cli.entry import CliState, stop_on_signals
    from gpi_desktop.core.cluster.shards import merge_shards

    state = CliState(quiet=args.quiet)
    with stop_on_signals(state):
        summary = merge_shards(args.dirs, Path(args.out), overwrite=args.overwrite, state=state,
                               allow_mixed_devices=args.allow_mixed_devices)
    print(f"Merged: {summary.n_rows} texts and hidden states (width {summary.hidden_size}) in {summary.folder}.",
          file=sys.stdout)
    return EXIT_OK

"""`gpi-desktop`: the window, or the same engine headless (`run`), the token, and `--self-test`.

A thin client of gpi_desktop.core: it parses flags, prints progress and turns
the project's errors into one plain sentence and an exit code.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gpi_desktop import __version__
from gpi_desktop.core.vocabulary.errors import (
    EXIT_CANCELLED,
    EXIT_FAILURE,
    EXIT_OK,
    Cancelled,
    GpiError,
    OutputFolderError,
)
from gpi_desktop.core.vocabulary.progress import Progress
from gpi_desktop.core.vocabulary.settings import DEVICES, DTYPES, POOLINGS, TEMPLATE_STYLES

log = logging.getLogger("gpi_desktop.cli")


class CliState:
    """Prints progress to stderr; Ctrl-C asks the engine to stop after the current step."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.cancel = False
        self._last = 0.0

    def set_status(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def set_progress(self, progress: Progress) -> None:
        now = time.monotonic()
        if self.quiet or (now - self._last < 1.0 and progress.done < progress.total):
            return
        self._last = now
        left = progress.seconds_left
        eta = f", about {format_duration(left)} left" if left is not None else ""
        msg = progress.message or f"{progress.done}/{progress.total} prompts, {progress.tokens_per_second:.1f} tokens/s{eta}"
        print(f"  {msg}", file=sys.stderr, flush=True)

    def set_partial_result(self, result) -> None:
        pass

    def is_interruption_requested(self) -> bool:
        return self.cancel


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))


@contextmanager
def stop_on_signals(state: CliState) -> Iterator[None]:
    """Ctrl-C and SIGTERM (`kill`, a logout, SLURM's preemption) ask the work to stop after the current step.

    Both are the Stop button: finished prompts stay in the journal, the run ends with
    exit code 130 and says how to resume.
    """
    previous = {number: signal.signal(number, lambda *_: setattr(state, "cancel", True)) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Outside the long work SIGTERM is Ctrl-C, which Python turns into KeyboardInterrupt (exit 130)."""
    if not hasattr(signal, "SIGTERM"):  # pragma: no cover - Windows has no SIGTERM to catch
        yield
        return

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpi-desktop",
        description="Generate texts and hidden states for GenAI-Powered Inference, exported as gpi_pack does. "
        "Without a command, opens the window.",
    )
    parser.add_argument("--version", action="version", version=f"gpi-desktop {__version__}")
    parser.add_argument("--self-test", action="store_true", help="drive the window through the whole flow on the demo model")
    parser.add_argument("--verbose", action="store_true", help="also print the log to the terminal")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run a job headless (servers, clusters)")
    run.add_argument("--model", required=False, default=None, help="Hugging Face model id or model folder "
                     "(default meta-llama/Llama-3.1-8B-Instruct)")
    run.add_argument("--prompts", required=False, help="CSV, TSV or XLSX file with one prompt per row")
    run.add_argument("--out", required=False, help="folder for the export (and the run's journal while it runs)")
    run.add_argument("--column", help="the column holding the prompts (default: the only or obvious text column)")
    run.add_argument("--task", default="create", help="create, repeat, or your own instruction text")
    run.add_argument("--pooling", default="last", choices=list(POOLINGS))
    run.add_argument("--max-new-tokens", type=int, default=1000)
    run.add_argument("--prefix", default="hidden_")
    run.add_argument("--save-name", default="generated_texts")
    run.add_argument("--batch-size", default="auto", help="a number, or auto")
    run.add_argument("--dtype", default="auto", choices=list(DTYPES))
    run.add_argument("--device", default="auto", choices=list(DEVICES),
                     help="auto: an NVIDIA GPU (cuda, also AMD through ROCm), else the Apple GPU (mps), else the CPU")
    run.add_argument("--template", default="gpi_pack", choices=list(TEMPLATE_STYLES))
    run.add_argument("--quantization", choices=["none", "8bit", "4bit"], default="none",
                     help="load the model in 8-bit or 4-bit (NVIDIA GPU and gpi-desktop[quantization]); changes the numbers")
    run.add_argument("--one-at-a-time", action="store_true",
                     help="gpi_pack's exact procedure: transformers' generate() on one prompt at a time (slow)")
    run.add_argument("--revision", help="a hub revision (branch, tag or commit) of the model")
    run.add_argument("--allow-pickle-weights", action="store_true",
                     help="accept a model that has only pickle weights (.bin), which can run code: only if you trust it")
    run.add_argument("--template-date", metavar="YYYY-MM-DD",
                     help="the date the chat template sees (default: today, fixed for the whole job, resume included); "
                          "give an earlier study's date to repeat it exactly")
    run.add_argument("--template-option", action="append", metavar="KEY=VALUE", default=[],
                     help="extra keyword for the chat template (value parsed as JSON where it parses); repeatable")
    run.add_argument("--generation-option", action="append", metavar="KEY=VALUE", default=[],
                     help="extra keyword for generation, e.g. repetition_penalty=1.1; repeatable")
    run.add_argument("--ignore-memory-check", action="store_true",
                     help="run even when the memory estimate says the model will not fit (it may run out of memory)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    run.add_argument("--overwrite", action="store_true", help="replace an earlier export or run in --out")
    run.add_argument("--quiet", action="store_true", help="print only errors and the final line")
    _add_cluster_arguments(run)

    _add_token_parser(sub)
    _add_merge_parser(sub)
    from gpi_desktop.cli.exports import add_export_parsers

    add_export_parsers(sub)
    return parser


def _add_cluster_arguments(run: argparse.ArgumentParser) -> None:
    try:
        from gpi_desktop.cli.run import add_run_arguments
    except ImportError:
        return
    add_run_arguments(run)


def _add_token_parser(sub) -> None:
    try:
        from gpi_desktop.cli.token import add_token_parser
    except ImportError:
        return
    add_token_parser(sub)


def _add_merge_parser(sub) -> None:
    try:
        from gpi_desktop.cli.run import add_merge_parser
    except ImportError:
        return
    add_merge_parser(sub)


def main(argv: list[str] | None = None) -> int:
    from gpi_desktop.core.model.devices import enable_mps_fallback

    enable_mps_fallback()  # before anything imports torch: PyTorch reads it only then
    parser = build_parser()
    args = parser.parse_args(argv)
    from gpi_desktop.logs import setup_logging

    setup_logging(verbose=args.verbose)
    try:
        if args.self_test:
            from gpi_desktop.selftest import main as self_test

            return self_test()
        if args.command is None:
            from gpi_desktop.ui.app import main as window

            return window([sys.argv[0]])
        with _sigterm_interrupts():
            return run_command(parser, args)
    except Cancelled:
        from gpi_desktop.cli.run import stopped_message

        print(stopped_message(args), file=sys.stderr)
        return EXIT_CANCELLED
    except GpiError as exc:
        log.info("user error: %s", exc)
        print(f"gpi-desktop: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception:
        log.exception("unexpected failure")
        from gpi_desktop.logs import log_dir

        print(f"gpi-desktop: something went wrong inside the program (our bug, not yours); details are in the log in "
              f"{log_dir()}. Please report it.", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def run_command(parser: argparse.ArgumentParser, args) -> int:
    if args.command == "run":
        return cmd_run(args)
    if args.command == "token":
        from gpi_desktop.cli.token import run_token

        return run_token(args)
    if args.command == "merge":
        from gpi_desktop.cli.run import run_merge

        return run_merge(args)
    if args.command in ("inspect", "compare"):
        from gpi_desktop.cli import exports as cli_exports

        return cli_exports.run_inspect(args) if args.command == "inspect" else cli_exports.run_compare(args)
    parser.error(f"unknown command {args.command}")
    return EXIT_FAILURE


def spec_from_args(args):
    from gpi_desktop.core.job.job import JobSpec
    from gpi_desktop.core.vocabulary.options import parse_options
    from gpi_desktop.core.vocabulary.settings import DEFAULT_MODEL, ExportSettings, RunSettings

    if not args.prompts:
        raise OutputFolderError("Give the prompts file with --prompts FILE (a CSV, TSV or XLSX file).")
    if not args.out:
        raise OutputFolderError("Give the output folder with --out FOLDER.")
    settings = RunSettings(
        model=DEFAULT_MODEL if args.model is None else args.model,
        task=args.task,
        pooling=args.pooling,
        max_new_tokens=args.max_new_tokens,
        dtype=args.dtype,
        device=args.device,
        template=args.template,
        batch_size=args.batch_size,
        strategy="one-at-a-time" if args.one_at_a_time else "batched",
        revision=args.revision,
        quantization=None if args.quantization == "none" else args.quantization,
        allow_pickle_weights=args.allow_pickle_weights,
        template_options=parse_options(args.template_option),
        generation_options=parse_options(args.generation_option),
        template_date=args.template_date or None,
    )
    return JobSpec(Path(args.prompts), args.column, settings, ExportSettings(args.prefix, args.save_name)).validate()


@dataclass(frozen=True)
class OutFolderClaim:
    """What a run may do in --out, decided while it holds the folder, before the model loads."""

    continue_journal: bool  # resume the journal there (--resume, or --overwrite and a journal of this very job)
    replace_export: bool  # the export may replace files there (--overwrite, or an interrupted export of this job)


def claim_out_folder(out: Path, spec, table, *, resume: bool, overwrite: bool) -> OutFolderClaim:
    """Decide, under `hold_folder(out)`, what the run may continue and replace; refuse what it may not touch.

    A journal of this job marks the folder's export files (manifest or not, temporary
    names included) as this run's own: an export killed while it was written is
    finished by a resume, and --overwrite never throws that journal away.
    """
    from gpi_desktop.core.output.export import holds_only_this_export
    from gpi_desktop.core.job.job import job_key
    from gpi_desktop.core.files.runstore import RUN_DIR_NAME, RunJournal

    journal = out / RUN_DIR_NAME
    same_job = RunJournal.holds_job(journal, job_key(spec, table))
    own = resume and same_job and out.is_dir() and holds_only_this_export(out, spec.export, len(table), {RUN_DIR_NAME})
    prepare_out_folder(out, resume=resume, overwrite=overwrite, own_export=own)
    if overwrite:
        if journal.exists() and not same_job:
            shutil.rmtree(journal)
        return OutFolderClaim(continue_journal=same_job, replace_export=True)
    return OutFolderClaim(continue_journal=resume, replace_export=own)


def prepare_out_folder(out: Path, *, resume: bool, overwrite: bool, own_export: bool = False) -> None:
    """Refuse an output folder that cannot be used, before anything is written."""
    from gpi_desktop.core.output.export import check_output_folder
    from gpi_desktop.core.files.runstore import RUN_DIR_NAME

    journal = out / RUN_DIR_NAME
    if resume and overwrite:
        raise OutputFolderError("Choose either --resume (continue) or --overwrite (start over), not both.")
    if out.exists() and journal.exists() and not (resume or overwrite):
        raise OutputFolderError(
            f"'{out}' holds an unfinished run; continue it with --resume, or start over with --overwrite."
        )
    check_output_folder(out, overwrite=overwrite or own_export, allow_names={RUN_DIR_NAME})


def say_duplicate_column(table) -> None:
    """Say which copy is used when the chosen column's name appears more than once in the header."""
    from gpi_desktop.core.files.prompts import duplicate_of

    shared = duplicate_of(table.column, table.duplicates)
    if shared is not None:
        print(f"gpi-desktop: note: {shared.describe(Path(table.path).name)}; using '{table.column}'.",
              file=sys.stderr, flush=True)


def cmd_run(args) -> int:
    if getattr(args, "shard", None) or getattr(args, "job", None):
        from gpi_desktop.cli.run import cmd_run_cluster  # --shard / --job: the cluster issue's runs

        return cmd_run_cluster(args)
    from gpi_desktop.core.files.folderhold import hold_folder
    from gpi_desktop.core.job.job import export_run, load_prompts, run_job
    from gpi_desktop.core.model.models import resolve_source
    from gpi_desktop.core.files.runstore import RUN_DIR_NAME

    spec = spec_from_args(args)
    out = Path(args.out)
    # Everything the user can get wrong is checked before anything is written.
    table = load_prompts(spec)
    say_duplicate_column(table)
    source = resolve_source(spec.settings.model)
    # What can be said without holding the folder (a file, not writable, both flags) is said before holding it.
    prepare_out_folder(out, resume=args.resume, overwrite=args.overwrite, own_export=True)
    token = None
    if not source.is_local:
        from gpi_desktop.core.hub.secrets import find_token

        token = find_token().token
    state = CliState(quiet=args.quiet)
    # Held from the check to the end of the export: a second run into --out is refused, not overwritten.
    with hold_folder(out), stop_on_signals(state):
        claim = claim_out_folder(out, spec, table, resume=args.resume, overwrite=args.overwrite)
        started = time.monotonic()
        outcome = run_job(spec, out / RUN_DIR_NAME, state, resume=claim.continue_journal, token=token,
                          replace_stale=args.overwrite, ignore_memory_check=args.ignore_memory_check)
        state.set_status("Writing the export folder…")
        # Not replacing (a fresh run): the export checks the folder again and refuses another job's files.
        export_run(outcome, out, overwrite=claim.replace_export, allow_names={RUN_DIR_NAME}, state=state)
        shutil.rmtree(out / RUN_DIR_NAME, ignore_errors=True)
    n = len(outcome.results)
    limit = sum(r.hit_limit for r in outcome.results)
    print(f"Done: {n} texts and hidden states (width {outcome.model_info.hidden_size}) in {out} "
          f"after {format_duration(time.monotonic() - started)}"
          + (f"; {limit} stopped at the token limit" if limit else "") + ".")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

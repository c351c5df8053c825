"""One GPI job from prompts file to export folder: what the command line and the window both call.

table = load_prompts(spec)                       # fast; raises PromptFileError
outcome = run_job(spec, work_dir, state)         # long; journaled, resumable, cancellable
export_run(outcome, folder)                      # the gpi_pack-compatible export folder
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import logging
import platform
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import gpi_desktop
from gpi_desktop.core.files.legacy_runs import job_folder
from gpi_desktop.core.files.prompts import PromptTable, load_prompt_table
from gpi_desktop.core.files.runstore import RunJournal, is_in_use, summarize
from gpi_desktop.core.generation.instructions import (
    Renderer,
    TemplateRecord,
    make_renderer,
    template_record,
    token_ids_sha256,
)
from gpi_desktop.core.job.journals import ResumePolicy, check_journal_model, existing_journal, journal_template_date
from gpi_desktop.core.model import context, models
from gpi_desktop.core.model.devices import unsupported_operation
from gpi_desktop.core.model.host import allocated_cpus
from gpi_desktop.core.model.memory import FitVerdict, check_fit
from gpi_desktop.core.model.models import LoadedModel, ModelFiles, ModelInfo, PromptTokenizer
from gpi_desktop.core.output.export import ExportSummary, write_export
from gpi_desktop.core.vocabulary.errors import GpiError, MemoryFitError, Remedy, ResumeError
from gpi_desktop.core.vocabulary.progress import NullState, TaskState, check_cancel
from gpi_desktop.core.vocabulary.results import PromptResult
from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings, parse_batch_size, stable_hash
from gpi_desktop.core.vocabulary.template_date import job_template_date

if TYPE_CHECKING:
    from gpi_desktop.core.generation.engine import EncodedPrompt  # torch

log = logging.getLogger(__name__)


class RowShare(Protocol):
    """The share of a job's rows one cluster task runs (`core/cluster/shards.py`'s `Shard`).

    A protocol, not that class: the job is below the cluster package, which splits
    jobs into shards, and run_job needs only a share's label and its rows.
    """

    @property
    def index(self) -> int: ...

    @property
    def count(self) -> int: ...

    @property
    def label(self) -> str: ...

    def select(self, lengths: Sequence[int], batch_size: int | None = None, max_new_tokens: int = 0) -> list[int]: ...


@dataclass(frozen=True)
class JobSpec:
    prompts_path: Path
    column: str | None = None
    settings: RunSettings = field(default_factory=RunSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    sheet: str | None = None  # the Excel workbook's sheet holding the prompts (None: the first)

    def validate(self) -> JobSpec:
        self.settings.validate()
        self.export.validate()
        return self


@dataclass
class RunOutcome:
    spec: JobSpec
    table: PromptTable
    model_info: ModelInfo
    results: list[PromptResult]  # input order, one per row
    instruction: str
    system_role: bool
    batch_size: int
    rows: list[int] | None = None  # a shard's rows (sorted); None: every row of the table
    shard: RowShare | None = None
    template: TemplateRecord | None = None  # the date and the example row the prompts were rendered with
    seconds_spent: float = 0.0  # generating, over every session of the job (what "took" reports)
    numbers: dict[str, Any] | None = None  # what the bytes depend on beyond inputs and settings (exact.numbers_record)

    def manifest_fields(self) -> dict[str, Any]:
        s = self.spec.settings
        template = {"prompt_template": self.template.to_manifest()} if self.template is not None else {}
        return {
            **template,
            "model": self.model_info.to_dict(),
            "settings": {
                "task": s.task,
                "instruction": self.instruction,
                "pooling": s.pooling,
                "max_new_tokens": s.max_new_tokens,
                "template": s.template,
                "add_generation_prompt": s.template == "model-card",
                "system_role_fallback": not self.system_role,
                "template_options": s.template_options,
                "generation_options": s.generation_options,
                "decoding": "greedy",
                "strategy": s.strategy,
                "batch_size": self.batch_size,
            },
            "input": {
                "file": Path(self.table.path).name,
                "sha256": self.table.sha256,
                "column": self.table.column,
                **({"sheet": self.table.sheet} if len(self.table.sheets) > 1 else {}),
                "rows": len(self.table),
            },
            "versions": library_versions(),
            **({"numbers": self.numbers} if self.numbers is not None else {}),
        }


def library_versions() -> dict[str, str]:
    out = {"gpi_desktop": gpi_desktop.__version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "accelerate", "numpy", "pandas"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:  # pragma: no cover - frozen builds may lack metadata
            out[name] = "unknown"
    return out


def load_prompts(spec: JobSpec) -> PromptTable:
    return load_prompt_table(Path(spec.prompts_path), spec.column, sheet=spec.sheet)


def job_key(spec: JobSpec, table: PromptTable) -> dict[str, Any]:
    """What makes two runs the same job: input bytes and column, model, and every setting that changes numbers."""
    source = models.resolve_source(spec.settings.model)
    settings = spec.settings.numbers_key()
    if source.is_local:  # one folder written two ways (relative, absolute, through a link) is one model
        settings["model"] = str(source.local_path)
    return {
        "input_sha256": table.sha256,
        "column": table.column,
        "rows": len(table.texts),
        "model": str(source.local_path) if source.is_local else source.name,
        "settings": settings,
        "strategy": spec.settings.strategy,
        # The file's bytes do not say which sheet: a workbook of several names it (keys of other files stay as they were).
        **({"sheet": table.sheet} if len(table.sheets) > 1 else {}),
    }


def job_hash(spec: JobSpec, table: PromptTable) -> str:
    return stable_hash(job_key(spec, table))[:16]


RUNS_DIRNAME = "runs"  # in the window's data folder: one journal folder per job, named by its job hash


def job_journal_folder(runs_dir: Path, spec: JobSpec, table: PromptTable, elsewhere: Sequence[Path] = ()) -> Path:
    """Where the journal of this job is kept: `<runs_dir>/<job hash>`, unless only an older runs folder has it.

    `elsewhere`: the runs folders of an older version whose jobs could not be moved into `runs_dir`.
    """
    return job_folder(Path(runs_dir), job_hash(spec, table), elsewhere)


def job_record(spec: JobSpec) -> dict[str, Any]:
    """The inputs of a job as its journal keeps them, so that the window can reopen it (see kept_jobs)."""
    return {
        "prompts": str(Path(spec.prompts_path).absolute()),
        "column": spec.column,
        "sheet": spec.sheet,
        "settings": spec.settings.to_dict(),
        "export": {"prefix": spec.export.prefix, "save_name": spec.export.save_name},
    }


FILE_AS_IT_WAS, FILE_MOVED, FILE_CHANGED = "same", "moved", "changed"


@dataclass(frozen=True)
class KeptJob:
    """A job whose journal is kept in the window's runs folder: finished and waiting for its export, stopped before
    its last prompt (Stop, a crash, a closed window), or being run by another process now."""

    work_dir: Path
    spec: JobSpec
    rows_done: int
    rows: int
    modified: float  # when its last prompt finished (POSIX time)
    prompts_file: str  # FILE_AS_IT_WAS, FILE_MOVED (not at its path) or FILE_CHANGED (other bytes)
    in_use: bool = False  # another process (a second window, a command line) is running it now

    @property
    def finished(self) -> bool:
        return self.rows_done >= self.rows


def kept_jobs(*runs_dirs: Path) -> list[KeptJob]:
    """The jobs kept under `runs_dirs`: the finished ones first (ready to export), then the others; the latest
    first within each. Reads each prompts file to see whether it changed."""
    jobs = [job for runs_dir in runs_dirs for job in _jobs_in(Path(runs_dir))]
    return sorted(jobs, key=lambda job: (not job.finished, -job.modified))


def _jobs_in(runs_dir: Path) -> list[KeptJob]:
    jobs = []
    folders = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    for folder in folders:
        summary = summarize(folder)
        if summary is None:
            continue
        record, rows = summary.plan.get("job"), summary.key.get("rows")
        if not isinstance(record, dict) or not isinstance(rows, int):
            continue  # journaled by a version that kept no settings
        try:
            spec = JobSpec(
                Path(record["prompts"]),
                record.get("column"),
                RunSettings(**record["settings"]),
                ExportSettings(**record.get("export", {})),
                record.get("sheet"),
            )
        except (KeyError, TypeError):
            log.info("kept job in %s has settings of another version", folder)
            continue
        try:
            same = hashlib.sha256(spec.prompts_path.read_bytes()).hexdigest() == summary.key.get("input_sha256")
            state = FILE_AS_IT_WAS if same else FILE_CHANGED
        except OSError:
            state = FILE_MOVED
        jobs.append(
            KeptJob(folder, spec, min(summary.rows_done, rows), rows, summary.modified, state, is_in_use(folder))
        )
    return jobs


class MemoryCheck(Enum):
    """What a memory estimate that says the run will not fit does."""

    REFUSE = "refuse"  # stops the run before the model loads (MemoryFitError, Remedy.RUN_ANYWAY)
    RUN_ANYWAY = "run-anyway"  # the user knows better: the verdict is only said


@dataclass(frozen=True)
class JobRun:
    """One run of a job on this machine: the job, its prompts as the front end read them, its journal folder.

    The table is the one the front end loaded and showed: the prompts file is not read
    again, so a file edited since then changes neither the prompts run nor the job key.
    """

    spec: JobSpec
    table: PromptTable
    work_dir: Path
    shard: RowShare | None = None  # a cluster task's share (core/cluster/shards.py); None: every row
    token: str | None = field(default=None, repr=False)  # for the Hub; never in a repr, so never in a log

    @property
    def key(self) -> dict[str, Any]:
        """The journal's key: the job's, and for a shard its label, so that one shard's journal never resumes another."""
        key = job_key(self.spec, self.table)
        return key if self.shard is None else {**key, "shard": self.shard.label}


@dataclass(frozen=True)
class PreparedJob:
    """What a run decides before the weights load: the model's files, the prompts as token ids, the verdict."""

    files: ModelFiles  # the weights' folder, at the commit the tokenizer was read from
    prompts: _Prompts
    template_date: str
    verdict: FitVerdict | None  # None: no estimate could be made (it is advice)


def run_job(
    run: JobRun,
    state: TaskState | None = None,
    policy: ResumePolicy = ResumePolicy.REFUSE,
    memory: MemoryCheck = MemoryCheck.REFUSE,
) -> RunOutcome:
    """Run a job, journaling each finished prompt in `run.work_dir`: prepare it, then generate.

    `policy` says what happens to an unfinished journal there (REFUSE by default: finished work is
    never thrown away by accident). Before the model is loaded, a generation option the model would not
    accept stops the run, a memory estimate that says it will not fit stops it (unless `memory` is
    RUN_ANYWAY), and so does a prompt too long for the model's context with the token limit.
    """
    state = state or NullState()
    run.spec.validate()
    # From the config files: before anything loads or is written.
    from gpi_desktop.core.generation.option_check import check_generation_options  # torch

    check_generation_options(run.spec.settings, token=run.token)
    if policy is ResumePolicy.START_OVER:
        RunJournal.discard(run.work_dir)
    key = run.key
    journal = existing_journal(Path(run.work_dir), key, policy)
    try:  # closed whatever fails before or while generating: an open journal keeps its lock
        # The job's one template date: fixed when the job is created, the journal's on every resume.
        template_date = (
            journal_template_date(journal)
            if journal is not None
            else job_template_date(run.spec.settings.template_date)
        )
        check_cancel(state)
        prepared = prepare_job(run, state, template_date, memory)
        check_cancel(state)
        return generate(run, prepared, journal, state, policy)
    finally:
        if journal is not None:
            journal.close()


def prepare_job(run: JobRun, state: TaskState, template_date: str, memory: MemoryCheck) -> PreparedJob:
    """Everything before the (long) weight load, cheapest refusal first; then the model's one fetch.

    The config and tokenizer files come first (a hub model's weights are not fetched yet): a prompt too
    long for the model is refused before a memory estimate that such a prompt would blow up, and a model
    that will not fit is refused before its weights are downloaded. A hub model is pinned to the commit
    those files came from, and its verdict and weights are of that commit: the tokenizer and the weights
    cannot be of different commits, whatever is published on the Hub meanwhile.
    """
    settings = run.spec.settings
    use_allocated_cpus()
    state.set_status(f"Reading the tokenizer of {settings.model}…")
    reader = models.load_tokenizer_only(settings, token=run.token)
    check_cancel(state)
    prompts = _encode_prompts(run.spec, run.table, state, template_date, reader)
    pinned = models.pinned_settings(settings, reader.folder)
    verdict = report_fit(replace(run.spec, settings=pinned), run.table, state, token=run.token, memory=memory)
    files = models.fetch_model(pinned, token=run.token, state=state)
    return PreparedJob(files, prompts, template_date, verdict)


def generate(
    run: JobRun, prepared: PreparedJob, journal: RunJournal | None, state: TaskState, policy: ResumePolicy
) -> RunOutcome:
    """Load the weights from the prepared files and generate every prompt the journal lacks.

    `journal`: the unfinished journal to continue (the caller closes it), or None for a new one.
    """
    from gpi_desktop.core.generation.exact import numbers_record  # torch

    spec, prompts = run.spec, prepared.prompts
    loaded = models.load_model(spec.settings, prepared.files, state=state, tokenizer=prompts.renderer.tokenizer)
    check_cancel(state)
    rows, encoded = _shard_rows(spec, run.shard, prompts.encoded)
    used, batch = _journal_for_run(
        journal, run, loaded, encoded, prepared.template_date, replace_stale=policy is ResumePolicy.REPLACE_STALE
    )
    try:
        results_by_row, seconds_spent = _generate(spec, loaded, encoded, state, used, batch, prompts.prefix)
    finally:
        used.close()
    results = [replace(results_by_row[p.row], prompt_ids_sha256=token_ids_sha256(p.ids)) for p in encoded]
    return RunOutcome(
        spec=spec,
        table=run.table,
        model_info=loaded.info,
        results=results,
        instruction=prompts.renderer.instruction,
        system_role=prompts.renderer.system_role,
        batch_size=batch,
        rows=rows,
        shard=run.shard,
        template=prompts.template,
        seconds_spent=seconds_spent,
        numbers=numbers_record(loaded.model, row_exact=True, one_at_a_time=spec.settings.strategy == "one-at-a-time"),
    )


@dataclass(frozen=True)
class _Prompts:
    """A job's prompts as the model will see them, and what the manifest says about how they were rendered."""

    renderer: Renderer
    encoded: list[EncodedPrompt]  # one per row of the table
    template: TemplateRecord | None
    prefix: tuple[int, ...]  # the token ids the template puts before every prompt (prefix.template_prefix)


def _encode_prompts(
    spec: JobSpec, table: PromptTable, state: TaskState, template_date: str, reader: PromptTokenizer
) -> _Prompts:
    """Render and tokenize every prompt, refusing what will not fit in the model's context."""
    from gpi_desktop.core.generation.engine import EncodedPrompt  # torch
    from gpi_desktop.core.generation.prefix import template_prefix

    s = spec.settings
    renderer = make_renderer(reader.tokenizer, s.task, s.template, s.template_options, template_date)
    state.set_status("Preparing the prompts…")
    encoded = []
    for row, text in enumerate(table.texts):
        if row % 1000 == 0:
            check_cancel(state)
        encoded.append(EncodedPrompt(row, tuple(renderer.encode(text))))
    context.check_prompt_lengths([(p.row, len(p.ids)) for p in encoded], reader.context, s.max_new_tokens)
    return _Prompts(
        renderer=renderer,
        encoded=encoded,
        # Row 0 of the whole table is the example, in a shard too, so every shard records the same one.
        template=template_record(renderer, table.texts, [p.ids for p in encoded], s.template_date is not None),
        # The template's, not the table's: every row's numbers stay the same whatever other rows the job holds.
        prefix=template_prefix(renderer.encode),
    )


def shard_unit(settings: RunSettings) -> int | None:
    """How many rows go to a shard together (None: any single row).

    A fixed batch size shards by whole waves of the single-machine plan (a running batch refills its rows
    within a wave), so each wave runs exactly as it would on one machine; recomputed identically on resume
    (it depends only on the prompts and settings).
    """
    from gpi_desktop.core.generation.engine import wave_size  # torch

    requested = parse_batch_size(settings.batch_size)
    return wave_size(requested) if isinstance(requested, int) and settings.strategy == "batched" else None


def _shard_rows(
    spec: JobSpec, shard: RowShare | None, encoded: list[EncodedPrompt]
) -> tuple[list[int] | None, list[EncodedPrompt]]:
    """The rows a shard runs (None: all) and their prompts."""
    if shard is None:
        return None, encoded
    rows = shard.select([len(p.ids) for p in encoded], shard_unit(spec.settings), spec.settings.max_new_tokens)
    return rows, [encoded[row] for row in rows]


def _journal_for_run(
    journal: RunJournal | None,
    run: JobRun,
    loaded: LoadedModel,
    encoded: list[EncodedPrompt],
    template_date: str,
    *,
    replace_stale: bool,
) -> tuple[RunJournal, int]:
    """The journal to generate into and its batch size: the existing one's, or a new journal with a new plan.

    An existing journal the loaded model would not match is closed, then removed where `replace_stale` allows.
    """
    from gpi_desktop.core.generation.engine import auto_batch_size  # torch

    spec, work_dir = run.spec, Path(run.work_dir)
    if journal is not None:
        try:
            check_journal_model(journal, loaded.info, work_dir)
        except BaseException as error:
            journal.close()
            if not (replace_stale and isinstance(error, ResumeError)):
                raise
            journal.remove()
            journal = None
    if journal is not None:
        # Written only now that the journal is known to be resumable: a refused journal is left as it was.
        changed: dict[str, Any] = (
            {"job": job_record(spec)} if journal.plan.get("job") != job_record(spec) else {}
        )  # moved file
        if journal.plan.get("template_date") != template_date:  # a journal made before dates were stored
            changed["template_date"] = template_date
        if changed:
            journal.set_plan(**changed)
        return journal, journal.plan["batch_size"]
    requested = parse_batch_size(spec.settings.batch_size)
    batch = requested if isinstance(requested, int) else auto_batch_size(loaded, encoded, spec.settings.max_new_tokens)
    journal = RunJournal.create(
        work_dir,
        run.key,
        hidden_size=loaded.info.hidden_size,
        plan={
            "batch_size": batch,
            "model_revision": loaded.info.revision,
            "template_date": template_date,
            "job": job_record(spec),
        },
    )
    return journal, batch


def _generate(
    spec: JobSpec,
    loaded: LoadedModel,
    encoded: list[EncodedPrompt],
    state: TaskState,
    journal: RunJournal,
    batch: int,
    prefix: tuple[int, ...],
) -> tuple[dict[int, PromptResult], float]:
    """Generate every prompt the journal lacks; returns all results by row and the job's seconds so far."""
    from gpi_desktop.core.generation import engine  # torch

    s = spec.settings
    done = journal.finished_rows()
    if done:  # counted within this run's rows: a shard's own, not the whole job's
        state.set_status(f"Resuming: {len(done)} of {len(encoded)} prompts are already done.")
    state.set_status(
        f"Generating {len(encoded) - len(done)} texts on {loaded.info.device} "
        f"({'one prompt at a time' if s.strategy == 'one-at-a-time' else f'{batch} at a time'})…"
    )
    config = engine.EngineConfig(
        pooling=s.pooling,
        max_new_tokens=s.max_new_tokens,
        batch_size=batch,
        generation_options=dict(s.generation_options),
        one_at_a_time=s.strategy == "one-at-a-time",
        shared_prefix=prefix,
    )
    started = time.perf_counter()
    earlier = float(journal.plan.get("seconds_spent") or 0.0)
    try:
        try:
            engine.run_engine(
                loaded,
                encoded,
                config,
                state,
                finished_rows=done,
                on_result=journal.append,
                finished_tokens=journal.finished_tokens(),
            )
        except NotImplementedError as exc:
            plain = unsupported_operation(exc)
            if plain is None:
                raise
            raise plain from exc  # finished prompts stay in the journal
        results_by_row = journal.results()
    finally:
        seconds_spent = earlier + time.perf_counter() - started
        _keep_seconds_spent(journal, seconds_spent)
    return results_by_row, seconds_spent


def _keep_seconds_spent(journal: RunJournal, seconds: float) -> None:
    """Note the job's generating time so far, for whole-job figures after a resume (best effort)."""
    try:
        journal.set_plan(seconds_spent=round(seconds, 3))
    except (OSError, GpiError) as error:  # a full disk must not hide why the run ended
        log.warning("could not note the time spent: %s", error)


def use_allocated_cpus() -> None:
    """Use as many torch threads as cores were allocated (a SLURM -c1 task, a taskset), never more.

    torch counts the node's cores, so a task given one core would otherwise
    run several threads on it and share it with other users' tasks.
    """
    import torch

    cpus = allocated_cpus()
    if cpus and torch.get_num_threads() > cpus:
        log.info("Using %d CPU threads (the cores allocated to this process).", cpus)
        torch.set_num_threads(cpus)


def report_fit(
    spec: JobSpec,
    table: PromptTable,
    state: TaskState,
    *,
    token: str | None = None,
    memory: MemoryCheck = MemoryCheck.REFUSE,
) -> FitVerdict | None:
    """Say before loading whether the model, its cache and the batch will fit, and what to change if not.

    "Will not fit" stops the run (MemoryFitError) unless the user insists: the
    estimate is approximate, but a run it rejects would fill the memory after
    a long load, or crawl for hours in swap. An automatic batch size and the
    engine's out-of-memory retry adapt to what is really free in a run that fits.
    """
    s = spec.settings
    requested = parse_batch_size(s.batch_size)
    # The template adds the instruction and headers; about 3 characters a token is a safe side guess.
    longest = max((len(t) for t in table.texts), default=0) // 3 + 100
    try:
        _estimate, verdict = check_fit(
            s.model,
            dtype=s.dtype,
            device=s.device,
            quantization=s.quantization,
            batch_size=requested if isinstance(requested, int) else 1,
            prompt_tokens=longest,
            max_new_tokens=s.max_new_tokens,
            revision=s.revision,
            token=token,
        )
    except GpiError:
        raise
    except Exception:  # the estimate is advice; a failure to make it must not stop the run
        log.warning("memory estimate failed", exc_info=True)
        return None
    advice = " ".join([verdict.sentence, *verdict.suggestions])
    if not verdict.fits and memory is MemoryCheck.REFUSE:
        raise MemoryFitError(advice, remedy=Remedy.RUN_ANYWAY)
    state.set_status(advice)
    return verdict


def export_run(
    outcome: RunOutcome,
    folder: Path,
    *,
    overwrite: bool = False,
    state: TaskState | None = None,
    allow_names: AbstractSet[str] = frozenset(),
) -> ExportSummary:
    """Write the export folder (docs/architecture.md) for a finished run."""
    return write_export(
        Path(folder),
        outcome.results,
        outcome.table,
        outcome.spec.export,
        outcome.manifest_fields(),
        overwrite=overwrite,
        state=state or NullState(),
        **({"allow_names": set(allow_names)} if allow_names else {}),
    )


def with_settings(spec: JobSpec, **changes: Any) -> JobSpec:
    return replace(spec, settings=replace(spec.settings, **changes))

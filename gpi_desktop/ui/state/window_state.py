"""What the window knows, as plain data, and what follows from it, as pure functions (no Qt here).

After napari's split of its state models (`components`) from their Qt views (`_qt`): the window
reads what its steps hold into a `StepInputs`, keeps what happened in this session in a
`WindowState`, and renders what these functions say: what blocks Run (`run_blocker`), which
steps are done (`steps_done`), whether the results on screen still belong to the inputs
(`result_changes`), and the summary above the Run button (`summary_html`). A contract in
pyproject.toml keeps PySide6 out of this package, so all of it is tested without a display.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gpi_desktop.core.files.prompts import PromptTable
from gpi_desktop.core.job.job import JobSpec, KeptJob, RunOutcome, job_key
from gpi_desktop.core.job.key_changes import KeyChange, key_changes
from gpi_desktop.core.model.models import TargetInfo
from gpi_desktop.core.session.job_session import JobSession, JobState
from gpi_desktop.core.vocabulary.formatting import human_duration
from gpi_desktop.core.vocabulary.progress import Progress, TextSoFar
from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings

STEP_ACCESS, STEP_MODEL, STEP_PROMPTS, STEP_SETTINGS, STEP_RUN, STEP_EXPORT, STEP_ESTIMATE = range(7)
STEP_TITLES = (
    "Hugging Face access",
    "Model",
    "Prompts",
    "Settings",
    "Run and preview",
    "Export",
    "Estimate the effect",
)


@dataclass(frozen=True)
class MemoryInputs:
    """The settings that decide how much memory a run needs (the settings step tells the model step)."""

    dtype: str = "auto"
    device: str = "auto"
    batch_size: int = 1  # "auto" counts as 1: the engine picks a batch that fits
    max_new_tokens: int = 1000
    quantization: str | None = None


@dataclass(frozen=True)
class StepInputs:
    """What the steps hold now, as the window read it from them."""

    token_found: bool = False  # many models need no token: step 1 is optional
    model: str = ""
    target: TargetInfo | None = None  # what the model check said (None: not checked, or it failed)
    model_checking: bool = False
    prompts_loading: bool = False
    rows_shown: int = 0  # rows of the file on show in step 3, whether or not its text column is chosen
    table: PromptTable | None = None  # the file with its text column chosen
    empty_rows: int = 0
    too_long: str | None = None  # the sentence naming the prompts too long for the model's context
    run: RunSettings | None = None  # None while an option line is half-typed
    job: JobSpec | None = None  # the job these inputs describe; None with `job_problem` or without a table
    job_problem: str | None = None  # why they describe none, in the window's words


# A run the user asked for, between the journal check and its start: the job session's view of its journal.
PendingRun = JobState


@dataclass
class WindowState:
    """What happened in this window's session: the runs and exports, and what is on show from them."""

    outcome: RunOutcome | None = None  # the last finished run
    last_export: Path | None = None
    starting: bool = False  # between Run and the start of the worker (the journal check)
    busy: bool = False  # a run or an export works: the inputs are locked
    close_when_idle: bool = False
    prompts_done: int = 0  # the last prompt count the run reported (resumed prompts included)
    last_progress: Progress | None = None  # the run's last report of its prompts (its speed, for Stop's question)
    stopped_here: set[Path] = field(default_factory=set)  # work dirs this session stopped: continued without asking
    run_work_dir: Path | None = None  # the journal of the run in the preview
    launched: PendingRun | None = None  # the run last started, to start again when the user insists
    shown: PendingRun | None = None  # the job whose results are in the preview (finished or not)
    shown_changes: tuple[KeyChange, ...] | None = None  # what the window last said about them
    export_settings: ExportSettings | None = None  # the file names of the export under way
    reopening: KeptJob | None = None  # the kept job being reopened, until its prompts file is read


def inspect_job(spec: JobSpec, table: PromptTable, runs_dir: Path, elsewhere: tuple[Path, ...] = ()) -> PendingRun:
    """Where this job keeps its journal and how far it got (runs off the main thread: it reads the journal).

    `elsewhere`: older runs folders whose jobs could not be moved into `runs_dir`.
    """
    return JobSession.in_runs_folder(spec, table, runs_dir, elsewhere).inspect()


def run_blocker(inputs: StepInputs, starting: bool) -> str | None:
    """Why Run cannot start yet, in plain words, or None."""
    if starting:
        return "The run is starting."
    if inputs.prompts_loading:
        return "The prompts file is still being read."
    if inputs.table is None:
        return (
            "Open a prompts file first (step 3)."
            if inputs.rows_shown == 0
            else "Choose the column with the texts (step 3)."
        )
    if inputs.empty_rows:
        return "Some rows have no text (step 3 shows them in red): fill them or delete them, then open the file again."
    if inputs.too_long:
        return inputs.too_long
    if not inputs.model:
        return "Enter a model first (step 2)."
    return inputs.job_problem


def result_changes(inputs: StepInputs, shown: PendingRun | None) -> tuple[KeyChange, ...] | None:
    """What differs between the job of the results on show and the inputs now.

    None: no results are shown; (): they are the current inputs' own. Inputs that make no job (a
    half-typed option, no file) count as a change, named by their own sentence.
    """
    if shown is None:
        return None
    if inputs.table is None or inputs.prompts_loading:
        return (KeyChange("the prompts file (none is open now)"),)
    if inputs.job is None:
        return (KeyChange((inputs.job_problem or "the inputs make no job").rstrip(".")),)
    return key_changes(shown.key, job_key(inputs.job, inputs.table))


def current_outcome(state: WindowState, changes: tuple[KeyChange, ...] | None) -> RunOutcome | None:
    """The finished run, when the inputs are still the ones that made it (`changes` empty); else None."""
    return state.outcome if state.outcome is not None and changes == () else None


def steps_done(inputs: StepInputs, state: WindowState, changes: tuple[KeyChange, ...] | None) -> tuple[bool, ...]:
    """Which steps to tick. Settings always have values, and an estimate is never final, so neither is ticked."""
    fresh = current_outcome(state, changes) is not None
    return (
        inputs.token_found,
        model_checked(inputs.target),
        inputs.table is not None and not inputs.empty_rows and not inputs.too_long,
        False,
        fresh,
        fresh and state.last_export is not None,
        False,
    )


def model_checked(target: TargetInfo | None) -> bool:
    """Step 2 is done when the model's config was read: its vector length is known."""
    return target is not None and bool(target.hidden_size)


def summary_html(inputs: StepInputs, demo_model: bool, settings_line: str) -> str:
    """What a run would use, above the Run button (HTML). `settings_line`: the run's settings in words."""
    lines = []
    if demo_model:
        lines.append("<b>Model:</b> the demo model (random weights: its texts are gibberish)")
    else:
        lines.append(f"<b>Model:</b> {_html(inputs.model) or '(none)'}")
    target = inputs.target
    if target is not None:
        where = "the CPU (slow for large models)" if target.on_cpu else _html(target.where)
        width = (
            f"{target.hidden_size:,} numbers per vector" if target.hidden_size else "numbers per vector not known yet"
        )
        lines.append(f"<b>Runs on:</b> {where}, {width}")
    elif inputs.model:
        why = "the model is being checked" if inputs.model_checking else "see step 2"
        lines.append(f"<b>Runs on:</b> not known yet ({why}), numbers per vector not known yet")
    table = inputs.table
    if table is not None:
        lines.append(
            f"<b>Prompts:</b> {len(table):,} rows from {_html(Path(table.path).name)}, column '{_html(table.column)}'"
        )
    else:
        lines.append("<b>Prompts:</b> none yet")
    if inputs.run is not None:
        lines.append(f"<b>Settings:</b> {_html(settings_line)}")
    return "<br>".join(lines)


def work_lost_on_stop(writing: Sequence[TextSoFar], last: Progress | None) -> str:
    """'15 texts in progress, about 12 min of work, will start over when the job continues: …' ('' if none).

    A text in progress is not kept across a stop: continuing it from its tokens would not give the
    numbers of an uninterrupted run, so the job reruns it whole (see core/generation/engine.py).
    """
    if not writing:
        return ""
    tokens = sum(t.n_tokens for t in writing)
    speed = last.tokens_per_second if last is not None else 0.0
    work = f", about {human_duration(tokens / speed)} of work," if speed > 0 else f" ({tokens:,} tokens)"
    return (
        f"{len(writing):,} texts in progress{work} will start over when the job continues: a text is kept "
        "only once it is finished."
    )


def stopped_words(done: int, restarted: int) -> str:
    """After Stop: what is kept, and the texts that were in progress, which start over."""
    again = f" the {restarted:,} texts that were in progress start over," if restarted else ""
    return f"Stopped. {done:,} finished texts are kept;{again} press Run to continue where it stopped."


def _html(text: str) -> str:
    return html.escape(str(text), quote=False)

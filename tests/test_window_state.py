"""The window's state without Qt: what blocks Run, which steps are done, whether the results on show are stale."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

from gpi_desktop.core.files.prompts import PromptTable
from gpi_desktop.core.job.job import JobRun, JobSpec, RunOutcome
from gpi_desktop.core.model.models import TargetInfo
from gpi_desktop.core.session.job_session import JobSession
from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings
from gpi_desktop.ui.state.window_state import (
    STEP_EXPORT,
    STEP_MODEL,
    STEP_PROMPTS,
    STEP_RUN,
    STEP_SETTINGS,
    PendingRun,
    StepInputs,
    WindowState,
    current_outcome,
    result_changes,
    run_blocker,
    steps_done,
    summary_html,
)

CHECKED = TargetInfo(device_name="cpu", free_bytes=None, on_cpu=True, hidden_size=64, warning="")


def _table(texts=("a", "b"), sha="1" * 64) -> PromptTable:
    return PromptTable(
        path=Path("/data/prompts.csv"),
        frame=pd.DataFrame({"text": list(texts)}),
        column="text",
        sha256=sha,
        encoding="utf-8",
    )


def _ready(**changes) -> StepInputs:
    """Inputs that make a job: a checked model, a table, settings."""
    table = _table()
    run = RunSettings(model="org/tiny-model", max_new_tokens=20)
    job = JobSpec(prompts_path=table.path, column="text", settings=run, export=ExportSettings())
    return replace(
        StepInputs(model="org/tiny-model", target=CHECKED, rows_shown=2, table=table, run=run, job=job), **changes
    )


def _shown(inputs: StepInputs) -> PendingRun:
    return PendingRun(JobSession(JobRun(inputs.job, inputs.table, Path("/runs/x"))), None)


def test_the_state_imports_no_qt_so_it_is_tested_without_a_display():
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", "import sys, gpi_desktop.ui.state.window_state; print(*sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert not {"PySide6", "shiboken6"} & {name.split(".")[0] for name in out.stdout.split()}


def test_run_is_blocked_for_the_first_missing_input_in_the_order_of_the_steps():
    assert run_blocker(_ready(), starting=True) == "The run is starting."
    assert run_blocker(_ready(prompts_loading=True), False) == "The prompts file is still being read."
    assert run_blocker(_ready(table=None, rows_shown=0), False) == "Open a prompts file first (step 3)."
    assert run_blocker(_ready(table=None), False) == "Choose the column with the texts (step 3)."
    assert run_blocker(_ready(empty_rows=1), False).startswith("Some rows have no text")
    assert run_blocker(_ready(too_long="2 prompts are too long."), False) == "2 prompts are too long."
    assert run_blocker(_ready(model="", job=None), False) == "Enter a model first (step 2)."
    assert run_blocker(_ready(job=None, job_problem="Fix the option line."), False) == "Fix the option line."
    assert run_blocker(_ready(), False) is None


def test_nothing_shown_is_not_stale_and_the_inputs_that_made_the_results_are_fresh():
    inputs = _ready()
    assert result_changes(inputs, None) is None
    assert result_changes(inputs, _shown(inputs)) == ()


def test_a_changed_setting_or_prompts_file_makes_the_results_stale_and_says_what_changed():
    made = _ready()
    shown = _shown(made)
    longer = replace(made.job, settings=replace(made.job.settings, max_new_tokens=40))
    assert [c.what for c in result_changes(replace(made, job=longer), shown)] == ["the maximum new tokens"]
    other_file = _table(sha="2" * 64)
    assert [c.what for c in result_changes(replace(made, table=other_file), shown)] == ["the prompts file"]
    assert [c.what for c in result_changes(replace(made, table=None), shown)] == ["the prompts file (none is open now)"]
    assert [c.what for c in result_changes(replace(made, prompts_loading=True), shown)] == [
        "the prompts file (none is open now)"
    ]
    half_typed = replace(made, job=None, job_problem="The option line is not complete.")
    assert [c.what for c in result_changes(half_typed, shown)] == ["The option line is not complete"]


def test_steps_are_ticked_from_the_inputs_and_the_run_never_for_settings():
    state = WindowState()
    assert steps_done(StepInputs(), state, None) == (False,) * 7
    done = steps_done(_ready(token_found=True), state, None)
    assert done[:STEP_SETTINGS] == (True, True, True) and not done[STEP_SETTINGS] and not done[STEP_RUN]
    assert not steps_done(_ready(target=replace(CHECKED, hidden_size=None)), state, None)[STEP_MODEL]
    assert not steps_done(_ready(too_long="too long"), state, None)[STEP_PROMPTS]


def test_the_run_and_export_steps_are_done_only_while_the_results_belong_to_the_inputs():
    outcome = object.__new__(RunOutcome)  # what the state checks is that there is one
    state = WindowState(outcome=outcome)
    assert steps_done(_ready(), state, ())[STEP_RUN] and not steps_done(_ready(), state, ())[STEP_EXPORT]
    state.last_export = Path("/exports/x")
    assert steps_done(_ready(), state, ())[STEP_EXPORT]
    stale = result_changes(_ready(table=None), _shown(_ready()))
    assert steps_done(_ready(), state, stale)[STEP_RUN:] == (False, False, False)
    assert current_outcome(state, ()) is outcome and current_outcome(state, stale) is None
    assert current_outcome(WindowState(), ()) is None


def test_the_summary_names_the_model_where_it_runs_the_prompts_and_the_settings():
    text = summary_html(_ready(), demo_model=False, settings_line="20 new tokens <max>")
    assert "<b>Model:</b> org/tiny-model" in text and "the CPU (slow for large models), 64 numbers per vector" in text
    assert "2 rows from prompts.csv, column 'text'" in text and "20 new tokens &lt;max&gt;" in text
    checking = summary_html(_ready(target=None, model_checking=True, table=None, run=None), False, "")
    assert "not known yet (the model is being checked)" in checking and "<b>Prompts:</b> none yet" in checking
    assert "<b>Settings:</b>" not in checking
    assert "the demo model" in summary_html(_ready(), demo_model=True, settings_line="")


def test_stop_says_how_many_texts_in_progress_and_about_how_much_work_start_over():
    from gpi_desktop.core.vocabulary.progress import Progress, TextSoFar
    from gpi_desktop.ui.state.window_state import stopped_words, work_lost_on_stop

    writing = [TextSoFar(row, "text", 240) for row in range(15)]  # 3,600 tokens at 5 a second: 12 min
    last = Progress(15, 30, tokens_per_second=5.0)
    assert work_lost_on_stop(writing, last).startswith(
        "15 texts in progress, about 12 min 00 s of work, will start over when the job continues"
    )
    assert work_lost_on_stop(writing, None).startswith("15 texts in progress (3,600 tokens) will start over")
    assert work_lost_on_stop([], last) == ""
    assert stopped_words(15, 15) == (
        "Stopped. 15 finished texts are kept; the 15 texts that were in progress start "
        "over, press Run to continue where it stopped."
    )

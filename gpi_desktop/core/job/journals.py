"""Which unfinished journal a run continues: the resume policy, and the refusals that keep finished work safe."""

from __future__ import annotations

import datetime
import shutil
from enum import Enum
from pathlib import Path
from typing import Any

from gpi_desktop.core.files.runstore import RunJournal
from gpi_desktop.core.model.models import ModelInfo
from gpi_desktop.core.vocabulary.errors import Remedy, ResumeError, RunBusyError


class ResumePolicy(Enum):
    """What a run does with an unfinished journal in its journal folder."""

    REFUSE = "refuse"  # keep it and refuse the run, so that finished work is never thrown away by accident
    CONTINUE = "continue"  # continue it; one of another job, or one that can no longer be resumed, is refused
    # Continue it where it can be resumed; one that cannot (another job's, its plan lost, the model's files
    # changed) is deleted and the job started over. What replacing a folder's run and export means.
    REPLACE_STALE = "replace-stale"
    START_OVER = "start-over"  # delete it first: every prompt is generated again


def existing_journal(work_dir: Path, key: dict[str, Any], policy: ResumePolicy) -> RunJournal | None:
    """The journal already in `work_dir` to continue, or None; with REFUSE an existing one is refused."""
    if not RunJournal.exists(work_dir):
        return None
    if policy is ResumePolicy.REFUSE:
        raise ResumeError(f"'{work_dir}' holds an unfinished run", remedy=Remedy.RESUME_OR_START_OVER)
    replace_stale = policy is ResumePolicy.REPLACE_STALE
    journal = _open_journal(work_dir, key, replace_stale)  # refuses another job in plain words
    if journal is None:
        return None
    # Before anything is written into it or loaded for it: a journal that lost its plan cannot be resumed.
    return _with_batch_plan(journal, work_dir, replace_stale)


def journal_template_date(journal: RunJournal) -> str:
    """The template date of a journal's job; for a journal made before dates were stored, the day it was started.

    Earlier versions rendered every prompt when a run started, and the header is
    written then, so its modification day is the date those prompts had. It is
    stored in the plan (by run_job, once the journal is known to be resumable), so later resumes keep it
    whatever happens to the file.
    """
    stored = journal.plan.get("template_date")
    if stored:
        return str(stored)
    return datetime.date.fromtimestamp(journal.header_mtime()).isoformat()


def _open_journal(work_dir: Path, key: dict[str, Any], replace_stale: bool) -> RunJournal | None:
    """The journal to continue; None where a stale one was removed to start over (replace_stale)."""
    try:
        return RunJournal.open(work_dir, key)
    except RunBusyError:
        raise
    except ResumeError:
        if not replace_stale:
            raise
    shutil.rmtree(work_dir)
    return None


def _with_batch_plan(journal: RunJournal, work_dir: Path, replace_stale: bool) -> RunJournal | None:
    """The journal when its batch plan is there; else refused (closed), or removed for a new start (replace_stale)."""
    batch = journal.plan.get("batch_size")
    if not isinstance(batch, bool) and isinstance(batch, int) and batch >= 1:
        return journal
    journal.close()
    if replace_stale:
        journal.remove()
        return None
    # Any other batch size would give files that differ from an uninterrupted run's.
    raise ResumeError(
        f"The unfinished run in '{work_dir}' has lost its batch plan, so resuming it would not give the same files",
        remedy=Remedy.START_OVER,
    )


def check_journal_model(journal: RunJournal, info: ModelInfo, work_dir: Path) -> None:
    """Refuse a journal whose results the loaded model would not match."""
    plan = journal.plan
    if plan.get("model_revision") not in (None, info.revision):
        raise ResumeError(
            "The model's files changed since this run started, so its results would not match", remedy=Remedy.START_OVER
        )
    if journal.hidden_size not in (None, info.hidden_size):
        raise ResumeError(
            f"The unfinished run in '{work_dir}' holds results {journal.hidden_size} wide but the model's are "
            f"{info.hidden_size}, so it cannot be resumed",
            remedy=Remedy.START_OVER,
        )

"""One job's session, the policy both front ends follow: what its journal holds, claiming, running, exporting.

    session = JobSession.in_runs_folder(spec, table, runs_dir)     # the window: journals in the app's data folder
    session = JobSession.in_output_folder(spec, table, out)        # the command line: the journal in --out/.gpi-run
    state = session.inspect()                                      # how far the job got (reads its journal)
    with session.claim(policy) as claim:                           # checks (and holds) the output folder
        outcome = session.run(task_state, claim.policy)            # long: journaled, resumable, cancellable
        session.export(outcome, task_state, replace=claim.replace_export)   # then the journal is deleted

The table is the PromptTable the front end loaded and showed: the session never reads
the prompts file again, so a file edited meanwhile changes neither the run nor its key.

Holding the output folder (`FolderHold`, core/files/folderhold.py): a folder is held while
this job writes into it, so that a second run into the same folder is refused instead of
replacing the first one's files. On the command line the journal lives inside the output
folder, so the folder is held from the claim, before the model loads, to the end of the
export (WHOLE_JOB). The window keeps journals in its data folder and the export folder is
chosen after the run, so nothing of the job is in it before the export: it is held only
while the export writes (EXPORT_ONLY). A cluster task holds its shard folder the same way as
a whole job, from before anything about it is decided: the hold, not the files, decides
between two copies of one task (a second submission, a requeue racing the first).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from gpi_desktop.core.cluster.shards import SHARD_MANIFEST, Shard, write_shard_folder
from gpi_desktop.core.files.folderhold import hold_folder
from gpi_desktop.core.files.prompts import PromptTable
from gpi_desktop.core.files.runstore import RUN_DIR_NAME, RunJournal
from gpi_desktop.core.job import job
from gpi_desktop.core.job.job import JobRun, JobSpec, MemoryCheck, RunOutcome, job_journal_folder
from gpi_desktop.core.job.journals import ResumePolicy
from gpi_desktop.core.output.export import check_output_folder, holds_only_this_export
from gpi_desktop.core.vocabulary.errors import OutputFolderError, Remedy
from gpi_desktop.core.vocabulary.progress import TaskState
from gpi_desktop.core.vocabulary.results import PromptResult


class FolderHold(Enum):
    """How long a session holds its output folder (see the module's docstring)."""

    WHOLE_JOB = "whole job"  # the journal is inside the output folder: from the claim to the end of the export
    EXPORT_ONLY = "export only"  # the journal is elsewhere: only while the export writes


def folder_hold(work_dir: Path, output: Path | None) -> FolderHold:
    """The hold a session with this journal folder and output folder needs."""
    if output is not None and Path(work_dir).absolute().is_relative_to(Path(output).absolute()):
        return FolderHold.WHOLE_JOB
    return FolderHold.EXPORT_ONLY


@dataclass(frozen=True)
class JobState:
    """What a job's journal says before a run: how many prompts are done, and which."""

    session: JobSession
    finished: int | None  # prompts already in the journal; None when there is no journal
    finished_results: tuple[PromptResult, ...] = ()  # their texts and counts (vectors left on disk)

    @property
    def spec(self) -> JobSpec:
        return self.session.spec

    @property
    def table(self) -> PromptTable:
        return self.session.table

    @property
    def work_dir(self) -> Path:
        return self.session.work_dir

    @property
    def key(self) -> dict[str, Any]:
        """What the results of this job belong to (job_key): the window ties what it shows to it."""
        return self.session.key

    @property
    def is_finished(self) -> bool:
        return self.finished == len(self.table)


@dataclass(frozen=True)
class Claim:
    """What a run may do, decided while its output folder is claimed (held, where the session holds it)."""

    policy: ResumePolicy  # what the run does with the journal
    replace_export: bool  # whether the export may replace the files in the output folder
    continues: bool = False  # an unfinished journal of the job is there and the run continues it
    shard_finished: bool = False  # a cluster task whose shard folder is complete: nothing is left to run


@dataclass(frozen=True)
class JobSession:
    """One job on this machine from its journal to its export folder; see the module's docstring."""

    run_of: JobRun
    output: Path | None = None  # the export (or shard) folder where it is known before the run: the command line's

    @classmethod
    def in_output_folder(
        cls, spec: JobSpec, table: PromptTable, out: Path, *, shard: Shard | None = None, token: str | None = None
    ) -> JobSession:
        """The command line's session: the journal in `out`/.gpi-run, the export (or shard folder) in `out`."""
        return cls(JobRun(spec, table, Path(out) / RUN_DIR_NAME, shard, token), Path(out))

    @classmethod
    def in_runs_folder(
        cls,
        spec: JobSpec,
        table: PromptTable,
        runs_dir: Path,
        elsewhere: Sequence[Path] = (),
        *,
        token: str | None = None,
    ) -> JobSession:
        """The window's session: the journal in `runs_dir`/<job hash> (or an older runs folder that has it)."""
        return cls(JobRun(spec, table, job_journal_folder(runs_dir, spec, table, elsewhere), token=token))

    @property
    def spec(self) -> JobSpec:
        return self.run_of.spec

    @property
    def table(self) -> PromptTable:
        return self.run_of.table

    @property
    def work_dir(self) -> Path:
        return Path(self.run_of.work_dir)

    @property
    def shard(self) -> Shard | None:
        return self.run_of.shard  # type: ignore[return-value]  # in_output_folder takes a Shard

    @property
    def key(self) -> dict[str, Any]:
        return self.run_of.key

    @property
    def hold(self) -> FolderHold:
        return folder_hold(self.work_dir, self.output)

    def with_run(self, **changes: Any) -> JobSession:
        """The same session, its run changed: the Hub token found when the run starts, a cluster task's pinned model."""
        return JobSession(replace(self.run_of, **changes), self.output)

    # --- before the run ---------------------------------------------------------------------------

    def inspect(self) -> JobState:
        """How far this job got (reads its journal: off the GUI thread); a journal of another job is refused."""
        if not RunJournal.exists(self.work_dir):
            return JobState(self, None)
        with RunJournal.open(self.work_dir, self.key) as journal:
            return JobState(self, len(journal), tuple(journal.results(vectors=False).values()))

    @contextmanager
    def claim(self, policy: ResumePolicy) -> Iterator[Claim]:
        """Check the output folder before anything is written, hold it (WHOLE_JOB), and say what the run may do.

        With REFUSE an unfinished run in the folder is refused; with CONTINUE the files of an
        export of this job killed while it was written are the run's own (a resume finishes
        them); with REPLACE_STALE a journal of another job is deleted and the export may replace
        the folder's files, while a journal of this very job is continued, never thrown away.
        A shard folder is held before anything about it is decided (a second copy of the task gets
        RunBusyError); with CONTINUE and no journal, a complete shard folder is `shard_finished`;
        REPLACE_STALE starts the shard over.
        """
        if self.output is None:
            yield Claim(policy, replace_export=False)
            return
        if self.shard is None:
            # What can be said without holding the folder (a file, not writable) is said before creating it to hold it.
            self._check_output(policy, own_export=True)
        with hold_folder(self.output):
            yield self._claim_shard_folder(policy) if self.shard is not None else self._claim_held_folder(policy)

    def _claim_held_folder(self, policy: ResumePolicy) -> Claim:
        same_job = RunJournal.holds_job(self.work_dir, self.key)
        out = self.output
        assert out is not None
        own = (
            policy is ResumePolicy.CONTINUE
            and same_job
            and out.is_dir()
            and holds_only_this_export(out, self.spec.export, len(self.table), {RUN_DIR_NAME})
        )
        self._check_output(policy, own_export=own)
        if policy is ResumePolicy.REPLACE_STALE:
            if self.work_dir.exists() and not same_job:
                shutil.rmtree(self.work_dir)
            return Claim(policy, replace_export=True, continues=same_job)
        return Claim(policy, replace_export=own, continues=policy is ResumePolicy.CONTINUE and same_job)

    def _claim_shard_folder(self, policy: ResumePolicy) -> Claim:
        out = self.output
        assert out is not None
        journal = RunJournal.exists(self.work_dir)
        if policy is ResumePolicy.CONTINUE and not journal and (out / SHARD_MANIFEST).is_file():
            return Claim(policy, replace_export=False, shard_finished=True)  # a requeued task whose shard is written
        # A shard's journal shows the folder is this shard's: files of an interrupted shard write are rewritten.
        if policy is ResumePolicy.CONTINUE and journal:
            return Claim(policy, replace_export=True, continues=True)
        self._check_output(policy, own_export=False)
        if policy is ResumePolicy.REPLACE_STALE:
            RunJournal.discard(self.work_dir)
            return Claim(ResumePolicy.START_OVER, replace_export=True)
        return Claim(policy, replace_export=True)

    def _check_output(self, policy: ResumePolicy, *, own_export: bool) -> None:
        """Refuse an output folder that cannot be used, before anything is written."""
        out = self.output
        assert out is not None
        if policy is ResumePolicy.REFUSE and out.exists() and self.work_dir.exists():
            raise OutputFolderError(f"'{out}' holds an unfinished run", remedy=Remedy.RESUME_OR_START_OVER)
        replacing = policy is ResumePolicy.REPLACE_STALE or own_export
        check_output_folder(out, overwrite=replacing, allow_names={RUN_DIR_NAME})

    # --- the run and the export -------------------------------------------------------------------

    def run(self, state: TaskState, policy: ResumePolicy, memory: MemoryCheck = MemoryCheck.REFUSE) -> RunOutcome:
        """Run the job into its journal (core/job/job.py's run_job): prepare, then generate."""
        return job.run_job(self.run_of, state, policy, memory)

    def export(
        self, outcome: RunOutcome, state: TaskState, *, folder: Path | None = None, replace: bool = False
    ) -> Path:
        """Write the export (or the shard folder) into `folder` (default: the session's output folder).

        The folder is held while it is written, except the output folder of a WHOLE_JOB session: call
        this inside `claim()`, which holds it. Once it is written the export holds everything, and the
        journal is deleted.
        """
        target = Path(folder) if folder is not None else self.output
        if target is None:
            raise ValueError("export() needs a folder: this session has no output folder")
        with ExitStack() as held:
            if self.shard is not None:
                state.set_status("Writing the shard folder…")
                write_shard_folder(target, outcome, state=state)
            else:
                if not (self.hold is FolderHold.WHOLE_JOB and target == self.output):
                    # A command-line run writing into it meanwhile is refused, not overwritten.
                    held.enter_context(hold_folder(target))
                state.set_status("Writing the export folder…")
                # Not replacing (a fresh run): the export checks the folder again and refuses another job's files.
                job.export_run(
                    outcome,
                    target,
                    overwrite=replace,
                    state=state,
                    allow_names={RUN_DIR_NAME} if target == self.output else frozenset(),
                )
        RunJournal.discard(self.work_dir)  # the export holds everything now; the journal would only take disk space
        return target

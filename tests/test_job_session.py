"""The job session's policy, without a model, a subprocess or Qt: what a claim decides, what it holds, what it keeps."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import RecordingState

from gpi_desktop.core.cluster.shards import SHARD_MANIFEST, Shard
from gpi_desktop.core.files.folderhold import hold_folder
from gpi_desktop.core.files.prompts import load_prompt_table
from gpi_desktop.core.files.runstore import RUN_DIR_NAME, RunJournal
from gpi_desktop.core.job import job
from gpi_desktop.core.job.job import JobSpec, MemoryCheck
from gpi_desktop.core.job.journals import ResumePolicy
from gpi_desktop.core.session.job_session import Claim, FolderHold, JobSession, folder_hold
from gpi_desktop.core.vocabulary.errors import OutputFolderError, Remedy, RunBusyError
from gpi_desktop.core.vocabulary.results import STOP_EOS, PromptResult
from gpi_desktop.core.vocabulary.settings import RunSettings

HUB_MODEL = "tiny-org/tiny-llama"  # a hub id: the job key needs no download


@pytest.fixture
def spec(prompts_csv) -> JobSpec:
    return JobSpec(prompts_csv, "text", RunSettings(model=HUB_MODEL, device="cpu", max_new_tokens=4))


def _session(spec: JobSpec, out, **kwargs) -> JobSession:
    return JobSession.in_output_folder(spec, load_prompt_table(spec.prompts_path, spec.column), out, **kwargs)


def _journal(folder, key, finished: int = 0) -> None:
    with RunJournal.create(folder, key, hidden_size=4, plan={"batch_size": 1}) as journal:
        for row in range(finished):
            journal.append(PromptResult(row, f"text {row}", np.ones(4, np.float32), 2, STOP_EOS))


def test_the_command_line_holds_its_folder_for_the_whole_job_the_window_only_for_the_export(spec, tmp_path):
    out = tmp_path / "out"
    assert folder_hold(out / RUN_DIR_NAME, out) is FolderHold.WHOLE_JOB
    assert folder_hold(tmp_path / "data" / "runs" / "abc", None) is FolderHold.EXPORT_ONLY
    table = load_prompt_table(spec.prompts_path, spec.column)
    assert JobSession.in_runs_folder(spec, table, tmp_path / "runs").hold is FolderHold.EXPORT_ONLY
    assert _session(spec, out).hold is FolderHold.WHOLE_JOB


def test_a_whole_job_claim_holds_the_folder_until_it_ends(spec, tmp_path):
    out = tmp_path / "out"
    with _session(spec, out).claim(ResumePolicy.REFUSE) as claim:
        assert claim == Claim(ResumePolicy.REFUSE, replace_export=False)
        with pytest.raises(RunBusyError):  # a second run into the same folder
            with hold_folder(out):
                pass
    with hold_folder(out):  # released
        pass


def test_an_unfinished_run_is_refused_without_a_policy_and_kept(spec, tmp_path):
    session = _session(spec, tmp_path / "out")
    _journal(session.work_dir, session.key, finished=2)
    with pytest.raises(OutputFolderError) as refused, session.claim(ResumePolicy.REFUSE):
        pass
    assert refused.value.remedy is Remedy.RESUME_OR_START_OVER
    assert session.inspect().finished == 2


def test_replacing_deletes_another_jobs_journal_but_continues_this_jobs(spec, tmp_path):
    session = _session(spec, tmp_path / "out")
    _journal(session.work_dir, {**session.key, "column": "other"})
    with session.claim(ResumePolicy.REPLACE_STALE) as claim:
        assert claim.policy is ResumePolicy.REPLACE_STALE and claim.replace_export
    assert not session.work_dir.exists()

    _journal(session.work_dir, session.key, finished=3)
    with session.claim(ResumePolicy.REPLACE_STALE) as claim:
        assert claim.replace_export and claim.continues
    assert session.inspect().finished == 3  # never thrown away: the run continues it


def test_continuing_may_finish_this_jobs_interrupted_export_but_not_touch_other_files(spec, tmp_path):
    session = _session(spec, tmp_path / "out")
    _journal(session.work_dir, session.key)
    (session.output / "hidden").mkdir()
    (session.output / "hidden" / "hidden_0.pt").write_bytes(b"")  # what a kill during the export leaves
    with session.claim(ResumePolicy.CONTINUE) as claim:
        assert claim.replace_export
    (session.output / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError), session.claim(ResumePolicy.CONTINUE):
        pass
    assert (session.output / "notes.txt").read_text() == "mine"


def test_a_fresh_run_may_not_replace_files_already_in_the_folder(spec, tmp_path):
    session = _session(spec, tmp_path / "out")
    session.output.mkdir()
    (session.output / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError) as refused, session.claim(ResumePolicy.REFUSE):
        pass
    assert refused.value.remedy is Remedy.EMPTY_FOLDER_OR_REPLACE


def test_a_shard_folder_is_held_before_anything_is_decided_and_replacing_it_starts_the_shard_over(spec, tmp_path):
    session = _session(spec, tmp_path / "out", shard=Shard(1, 2))
    assert session.hold is FolderHold.WHOLE_JOB
    _journal(session.work_dir, session.key, finished=1)
    with session.claim(ResumePolicy.CONTINUE) as claim:
        assert claim == Claim(ResumePolicy.CONTINUE, replace_export=True, continues=True)
        with pytest.raises(RunBusyError):  # a second copy of the task
            with session.claim(ResumePolicy.CONTINUE):
                pass
    with session.claim(ResumePolicy.REPLACE_STALE) as claim:
        assert claim.policy is ResumePolicy.START_OVER
    assert not session.work_dir.exists()


def test_a_requeued_shard_that_finished_has_nothing_left_to_run(spec, tmp_path):
    session = _session(spec, tmp_path / "out", shard=Shard(2, 2))
    with session.claim(ResumePolicy.CONTINUE) as claim:
        assert not claim.shard_finished
    session.output.mkdir(exist_ok=True)
    (session.output / SHARD_MANIFEST).write_text("{}")
    with session.claim(ResumePolicy.CONTINUE) as claim:
        assert claim.shard_finished
    with pytest.raises(OutputFolderError):  # without --resume the written folder is refused
        with session.claim(ResumePolicy.REFUSE):
            pass
    _journal(session.work_dir, session.key)
    with session.claim(ResumePolicy.CONTINUE) as claim:  # a journal: the shard is being redone
        assert not claim.shard_finished and claim.continues


def test_inspect_says_how_far_the_job_got(spec, tmp_path):
    table = load_prompt_table(spec.prompts_path, spec.column)
    session = JobSession.in_runs_folder(spec, table, tmp_path / "runs")
    assert session.inspect().finished is None
    _journal(session.work_dir, session.key, finished=len(table))
    state = session.inspect()
    assert state.finished == len(table) and state.is_finished
    assert [r.text for r in state.finished_results] == [f"text {row}" for row in range(len(table))]


def test_the_windows_export_holds_the_folder_while_it_writes_then_deletes_the_journal(spec, tmp_path, monkeypatch):
    table = load_prompt_table(spec.prompts_path, spec.column)
    session = JobSession.in_runs_folder(spec, table, tmp_path / "runs")
    _journal(session.work_dir, session.key, finished=len(table))
    folder = tmp_path / "export"
    seen = []

    def export_run(outcome, target, *, overwrite, state, allow_names):
        with pytest.raises(RunBusyError), hold_folder(target):
            pass
        seen.append((outcome, target, overwrite))

    monkeypatch.setattr(job, "export_run", export_run)
    assert session.export("the outcome", RecordingState(), folder=folder, replace=True) == folder
    assert seen == [("the outcome", folder, True)]
    assert not session.work_dir.exists()


def test_the_session_runs_with_the_policy_and_memory_check_it_is_given(spec, tmp_path, monkeypatch):
    session = _session(spec, tmp_path / "out").with_run(token="hf_secret")
    calls = []
    monkeypatch.setattr(job, "run_job", lambda run, state, policy, memory: calls.append((run, policy, memory)))
    session.run(RecordingState(), ResumePolicy.START_OVER, MemoryCheck.RUN_ANYWAY)
    ((run, policy, memory),) = calls
    assert (policy, memory) == (ResumePolicy.START_OVER, MemoryCheck.RUN_ANYWAY)
    assert run.token == "hf_secret" and "hf_secret" not in repr(session)
    assert run.table is session.table  # the table the front end read: the prompts file is not read again

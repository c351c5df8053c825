"""run_job's own bookkeeping: what it leaves behind when a step before generating fails, what it reads once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import PROMPTS
from fakes import RecordingState
from hubserver import MODEL, repo_from_folder

from gpi_desktop.core.files.runstore import RunJournal
from gpi_desktop.core.job.job import JobRun, JobSpec, job_key, load_prompts, run_job, with_settings
from gpi_desktop.core.job.journals import ResumePolicy
from gpi_desktop.core.model import models
from gpi_desktop.core.model.tinymodel import TinySpec, build_tiny_model
from gpi_desktop.core.vocabulary.errors import ModelError, SettingsError
from gpi_desktop.core.vocabulary.progress import NullState
from gpi_desktop.core.vocabulary.settings import RunSettings


def _spec(model, prompts) -> JobSpec:
    return JobSpec(prompts, "text", RunSettings(model=str(model), device="cpu", max_new_tokens=4, batch_size=2))


def _journal_of(spec: JobSpec, work) -> None:
    with RunJournal.create(work, job_key(spec, load_prompts(spec)), hidden_size=64, plan={"batch_size": 2}):
        pass


def _broken_load(*args, **kwargs):
    raise ModelError("A weight file of the model is damaged: download it again.")


def test_a_resume_whose_model_fails_to_load_leaves_the_journal_closed(tiny_llama, prompts_csv, tmp_path, monkeypatch):
    spec = _spec(tiny_llama, prompts_csv)
    work = tmp_path / "work"
    _journal_of(spec, work)
    monkeypatch.setattr(models, "load_model", _broken_load)
    with pytest.raises(ModelError, match="damaged"):
        run_job(JobRun(spec, load_prompts(spec), work), NullState(), ResumePolicy.CONTINUE)
    # A journal left open keeps its lock: the next opener (a Resume after fixing the model) would be refused.
    RunJournal.open(work, job_key(spec, load_prompts(spec))).close()


def test_a_resume_refused_before_loading_leaves_the_journal_closed(tiny_llama, prompts_csv, tmp_path, monkeypatch):
    spec = _spec(tiny_llama, prompts_csv)
    work = tmp_path / "work"
    _journal_of(spec, work)

    def too_long(*args, **kwargs):
        raise SettingsError("Row 3 is too long for the model: shorten it.")

    monkeypatch.setattr("gpi_desktop.core.model.context.check_prompt_lengths", too_long)
    with pytest.raises(SettingsError, match="too long"):
        run_job(JobRun(spec, load_prompts(spec), work), NullState(), ResumePolicy.CONTINUE)
    RunJournal.open(work, job_key(spec, load_prompts(spec))).close()


def test_a_journal_made_with_a_model_folders_absolute_path_resumes_with_it_written_relative_or_through_a_link(
    tiny_llama, prompts_csv, tmp_path, monkeypatch
):
    made = _spec(tiny_llama.absolute(), prompts_csv)
    work = tmp_path / "work"
    _journal_of(made, work)
    (tmp_path / "link").symlink_to(tiny_llama, target_is_directory=True)
    monkeypatch.chdir(tiny_llama.parent)
    for written in (tiny_llama.name, f"./{tiny_llama.name}/", str(tmp_path / "link")):
        again = _spec(written, prompts_csv)
        assert job_key(again, load_prompts(again)) == job_key(made, load_prompts(made)), written
        RunJournal.open(work, job_key(again, load_prompts(again))).close()


def test_a_model_updated_on_the_hub_during_a_run_gives_tokenizer_and_weights_of_one_commit(
    fake_hub, tiny_llama, prompts_csv, tmp_path
):
    other = build_tiny_model(tmp_path / "other", TinySpec(architecture="llama", seed=7))
    repo = fake_hub.add(repo_from_folder(MODEL, tiny_llama))
    first = repo.commit

    class PublishingWhileThePromptsArePrepared(RecordingState):
        """The Hub gets a new commit after the tokenizer was read and before the weights load."""

        def set_status(self, message: str) -> None:
            super().set_status(message)
            if message.startswith("Preparing the prompts") and repo.commit == first:
                repo.publish({p.name: p.read_bytes() for p in other.iterdir() if p.is_file()}, "c" * 40)

    spec = JobSpec(prompts_csv, "text", RunSettings(model=MODEL, device="cpu", max_new_tokens=4, batch_size=2))
    from_hub = run_job(JobRun(spec, load_prompts(spec), tmp_path / "hub"), PublishingWhileThePromptsArePrepared())
    assert repo.commit != first  # the Hub did change during the run
    assert from_hub.model_info.revision == first
    local = with_settings(spec, model=str(tiny_llama))
    from_folder = run_job(JobRun(local, load_prompts(local), tmp_path / "folder"))
    assert [r.text for r in from_hub.results] == [r.text for r in from_folder.results]
    np.testing.assert_array_equal(
        np.stack([r.vector for r in from_hub.results]), np.stack([r.vector for r in from_folder.results])
    )


def test_the_prompts_file_edited_after_it_was_read_changes_neither_the_prompts_run_nor_the_job_key(
    tiny_llama, prompts_csv, tmp_path
):
    spec = _spec(tiny_llama, prompts_csv)
    table = load_prompts(spec)
    pd.DataFrame({"id": range(3), "text": ["edited", "after", "loading"]}).to_csv(prompts_csv, index=False)
    work = tmp_path / "work"
    outcome = run_job(JobRun(spec, table, work))
    assert len(outcome.results) == len(PROMPTS) and outcome.table is table
    assert outcome.manifest_fields()["input"]["sha256"] == table.sha256
    assert RunJournal.holds_job(work, job_key(spec, table))  # the journal belongs to the prompts that were shown

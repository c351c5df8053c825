"""run_job's own bookkeeping: what it leaves behind when a step before generating fails."""

from __future__ import annotations

import pytest

from gpi_desktop.core.files.runstore import RunJournal
from gpi_desktop.core.job.job import JobSpec, job_key, load_prompts, run_job
from gpi_desktop.core.model import models
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
        run_job(spec, work, NullState(), resume=True)
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
        run_job(spec, work, NullState(), resume=True)
    RunJournal.open(work, job_key(spec, load_prompts(spec))).close()


def test_a_journal_made_with_a_model_folders_absolute_path_resumes_with_it_written_relative_or_through_a_link(
        tiny_llama, prompts_csv, tmp_path, monkeypatch):
    made = _spec(tiny_llama.absolute(), prompts_csv)
    work = tmp_path / "work"
    _journal_of(made, work)
    (tmp_path / "link").symlink_to(tiny_llama, target_is_directory=True)
    monkeypatch.chdir(tiny_llama.parent)
    for written in (tiny_llama.name, f"./{tiny_llama.name}/", str(tmp_path / "link")):
        again = _spec(written, prompts_csv)
        assert job_key(again, load_prompts(again)) == job_key(made, load_prompts(made)), written
        RunJournal.open(work, job_key(again, load_prompts(again))).close()

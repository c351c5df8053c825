"""core.job.job.kept_jobs: the jobs a finish, a stop or a crash left, with what reopening them needs; where a job's journal is."""

from __future__ import annotations

import pandas as pd
from conftest import PROMPTS
from fakes import RecordingState

from gpi_desktop.core.job.job import (
    FILE_AS_IT_WAS,
    FILE_CHANGED,
    FILE_MOVED,
    JobRun,
    JobSpec,
    job_hash,
    job_journal_folder,
    kept_jobs,
    load_prompts,
    run_job,
)
from gpi_desktop.core.job.journals import ResumePolicy
from gpi_desktop.core.vocabulary.errors import Cancelled
from gpi_desktop.core.vocabulary.settings import RunSettings


def _stop_a_job(model, csv, runs, **settings):
    spec = JobSpec(csv, "text", RunSettings(model=str(model), device="cpu", max_new_tokens=8, batch_size=1, **settings))
    work = runs / job_hash(spec, load_prompts(spec))
    try:
        run_job(JobRun(spec, load_prompts(spec), work), RecordingState(cancel_after=2), ResumePolicy.CONTINUE)
    except Cancelled:
        pass
    return spec, work


def test_a_stopped_job_is_listed_with_its_settings_rows_done_and_file_state(tiny_llama, tmp_path):
    csv = tmp_path / "p.csv"
    pd.DataFrame({"text": PROMPTS}).to_csv(csv, index=False)
    spec, work = _stop_a_job(tiny_llama, csv, tmp_path / "runs", pooling="mean")
    [job] = kept_jobs(tmp_path / "runs")
    assert job.work_dir == work and job.rows == len(PROMPTS) and job.rows_done == 2
    assert job.spec.settings == spec.settings and job.spec.column == "text"
    assert job.spec.prompts_path == csv.absolute() and job.prompts_file == FILE_AS_IT_WAS

    pd.DataFrame({"text": PROMPTS[::-1]}).to_csv(csv, index=False)
    assert kept_jobs(tmp_path / "runs")[0].prompts_file == FILE_CHANGED
    csv.unlink()
    assert kept_jobs(tmp_path / "runs")[0].prompts_file == FILE_MOVED


def test_a_finished_job_is_kept_and_listed_before_the_unfinished_ones_and_an_empty_folder_is_not(tiny_llama, tmp_path):
    short, long = tmp_path / "short.csv", tmp_path / "long.csv"
    pd.DataFrame({"text": PROMPTS[:2]}).to_csv(short, index=False)
    pd.DataFrame({"text": PROMPTS}).to_csv(long, index=False)
    spec, work = _stop_a_job(tiny_llama, short, tmp_path / "runs")
    run_job(JobRun(spec, load_prompts(spec), work), None, ResumePolicy.CONTINUE)  # ran to the end: waits for its export
    _stop_a_job(tiny_llama, long, tmp_path / "runs")  # the latest, yet after the finished one
    (tmp_path / "runs" / "empty").mkdir()
    jobs = kept_jobs(tmp_path / "runs")
    assert [(j.spec.prompts_path.name, j.finished, j.rows_done) for j in jobs] == [
        ("short.csv", True, 2),
        ("long.csv", False, 2),
    ]
    assert not any(j.in_use for j in jobs)
    assert kept_jobs(tmp_path / "nowhere") == []


def test_a_jobs_journal_is_named_by_its_hash_in_the_runs_folder_or_the_older_one_that_has_it(tmp_path):
    csv = tmp_path / "p.csv"
    pd.DataFrame({"text": PROMPTS}).to_csv(csv, index=False)
    spec = JobSpec(csv, "text", RunSettings(model="some/model"))
    table = load_prompts(spec)
    runs, old = tmp_path / "runs", tmp_path / "old" / "runs"
    assert job_journal_folder(runs, spec, table, [old]) == runs / job_hash(spec, table)
    (old / job_hash(spec, table)).mkdir(parents=True)
    assert job_journal_folder(runs, spec, table, [old]) == old / job_hash(spec, table)
    other = JobSpec(csv, "text", RunSettings(model="some/model", max_new_tokens=7))
    assert job_journal_folder(runs, other, table, [old]).name != job_hash(spec, table)  # the settings are in the hash

"""One template date per job: fixed when the job is created, used by every render (resume, shards, re-runs)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import PROMPTS
from fakes import RecordingState

from gpi_desktop.cli import main
from gpi_desktop.core.generation.instructions import make_renderer, token_ids_sha256
from gpi_desktop.core.job.job import JobRun, JobSpec, export_run, job_hash, job_key, load_prompts, run_job
from gpi_desktop.core.job.journals import ResumePolicy
from gpi_desktop.core.vocabulary.errors import Cancelled, SettingsError
from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings
from gpi_desktop.core.vocabulary.template_date import c_strftime, parse_template_date

MAX_NEW = 6
DAY1, DAY2, DAY3 = dt.date(2026, 3, 30), dt.date(2026, 3, 31), dt.date(2026, 4, 1)


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def spec_for(model: Path, prompts: Path, **settings) -> JobSpec:
    return JobSpec(
        prompts,
        "text",
        RunSettings(model=str(model), max_new_tokens=MAX_NEW, batch_size=2, device="cpu", **settings),
        ExportSettings(),
    )


class StopAfter(RecordingState):
    """Asks the run to stop once `n` prompts are finished (a kill between two prompts)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.finished = 0

    def set_partial_result(self, result) -> None:
        self.finished += 1

    def is_interruption_requested(self) -> bool:
        return self.finished >= self.n


@pytest.fixture(scope="module")
def tokenizer(tiny_dated):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dated)


def test_c_strftime_writes_english_names_whatever_the_locale():
    moment = dt.datetime(2024, 7, 26, 15, 4, 5)
    assert c_strftime(moment, "%d %b %Y") == "26 Jul 2024"
    assert c_strftime(moment, "%A %B %a %p %H:%M %%b") == "Friday July Fri PM 15:04 %b"
    assert c_strftime(moment, "%x") == "07/26/24"


@pytest.mark.parametrize("text", ["26.07.2024", "2024-7-26", "2024-02-30", "today", ""])
def test_a_template_date_not_written_yyyy_mm_dd_is_refused_in_plain_words(text):
    with pytest.raises(SettingsError, match="YYYY-MM-DD"):
        parse_template_date(text)
    with pytest.raises(SettingsError, match="YYYY-MM-DD"):
        RunSettings(template_date=text).validate()


def test_the_dated_template_renders_the_job_date_whatever_the_clock_says(tokenizer, clock):
    renderer = make_renderer(tokenizer, "create", "gpi_pack", {}, "2024-07-26")
    first = renderer.encode("hello")
    assert "Today Date: 26 Jul 2024" in renderer.render_text("hello")
    clock.day = DAY2
    assert renderer.encode("hello") == first
    assert renderer.uses_date


def test_without_a_job_date_the_template_follows_the_clock(tokenizer, clock):
    renderer = make_renderer(tokenizer, "create", "gpi_pack")
    assert "Today Date: 30 Mar 2026" in renderer.render_text("hello")
    clock.day = DAY2
    assert "Today Date: 31 Mar 2026" in renderer.render_text("hello")


def test_a_template_without_a_date_is_found_not_to_use_it(loaded):
    renderer = make_renderer(loaded.tokenizer, "create", "gpi_pack", {}, "2024-07-26")
    assert not renderer.uses_date


def test_a_date_string_template_option_still_reaches_the_template(tokenizer, clock):
    renderer = make_renderer(tokenizer, "create", "gpi_pack", {"date_string": "01 Jan 1999"}, "2024-07-26")
    assert "Today Date: 01 Jan 1999" in renderer.render_text("hello")
    assert not renderer.uses_date  # the date no longer reaches this template


def test_adding_the_date_keeps_the_key_of_a_job_without_one(tiny_dated, prompts_csv):
    spec = spec_for(tiny_dated, prompts_csv)
    table = load_prompts(spec)
    key = job_key(spec, table)
    assert "template_date" not in key["settings"]  # the keys (and work folders) of earlier jobs are unchanged
    dated = spec_for(tiny_dated, prompts_csv, template_date="2024-07-26")
    assert job_key(dated, table)["settings"]["template_date"] == "2024-07-26"
    assert job_hash(dated, table) != job_hash(spec, table)


def test_a_run_killed_one_day_and_resumed_the_next_equals_an_uninterrupted_run(
    tiny_dated, prompts_csv, tmp_path, clock
):
    spec = spec_for(tiny_dated, prompts_csv)
    whole = run_job(JobRun(spec, load_prompts(spec), tmp_path / "whole-journal"))
    export_run(whole, tmp_path / "whole")

    with pytest.raises(Cancelled):
        run_job(JobRun(spec, load_prompts(spec), tmp_path / "journal"), StopAfter(3))
    clock.day = DAY2  # the next morning
    resumed = run_job(JobRun(spec, load_prompts(spec), tmp_path / "journal"), None, ResumePolicy.CONTINUE)
    export_run(resumed, tmp_path / "resumed")

    assert digest(tmp_path / "resumed") == digest(tmp_path / "whole")
    template = manifest(tmp_path / "resumed")["prompt_template"]
    assert template["date"] == "2026-03-30" and template["date_used_by_template"]
    assert template["date_source"] == "the day the job was created"
    assert "Today Date: 30 Mar 2026" in template["example"]["rendered_text"]


def test_a_journal_of_an_earlier_version_resumes_with_the_day_it_was_started(tiny_dated, prompts_csv, tmp_path, clock):
    import os

    from gpi_desktop.core.files.runstore import HEADER_NAME

    spec = spec_for(tiny_dated, prompts_csv)
    with pytest.raises(Cancelled):
        run_job(JobRun(spec, load_prompts(spec), tmp_path / "journal"), StopAfter(2))
    header_path = tmp_path / "journal" / HEADER_NAME
    header = json.loads(header_path.read_text())
    del header["plan"]["template_date"], header["crc"]  # as earlier versions wrote it (no date, no seal)
    header_path.write_text(json.dumps(header))
    started = dt.datetime(2026, 3, 30, 10, 0).timestamp()
    os.utime(header_path, (started, started))
    clock.day = DAY3
    outcome = run_job(JobRun(spec, load_prompts(spec), tmp_path / "journal"), None, ResumePolicy.CONTINUE)
    assert outcome.template.date == "2026-03-30"


def test_the_same_job_created_on_two_days_with_the_date_set_gives_identical_files(
    tiny_dated, prompts_csv, tmp_path, clock
):
    spec = spec_for(tiny_dated, prompts_csv, template_date="2024-07-26")
    export_run(run_job(JobRun(spec, load_prompts(spec), tmp_path / "j1")), tmp_path / "first")
    clock.day = dt.date(2026, 5, 17)
    export_run(run_job(JobRun(spec, load_prompts(spec), tmp_path / "j2")), tmp_path / "second")
    assert digest(tmp_path / "first") == digest(tmp_path / "second")
    template = manifest(tmp_path / "first")["prompt_template"]
    assert template["date"] == "2024-07-26" and template["date_source"] == "given with the job"
    assert "Today Date: 26 Jul 2024" in template["example"]["rendered_text"]


def test_the_cli_template_date_flag_sets_the_job_date(tiny_dated, prompts_csv, tmp_path, clock):
    args = [
        "run",
        "--model",
        str(tiny_dated),
        "--prompts",
        str(prompts_csv),
        "--max-new-tokens",
        str(MAX_NEW),
        "--device",
        "cpu",
        "--quiet",
    ]
    assert main([*args, "--template-date", "2024-07-26", "--out", str(tmp_path / "a")]) == 0
    assert manifest(tmp_path / "a")["prompt_template"]["date"] == "2024-07-26"
    assert main([*args, "--template-date", "26/07/2024", "--out", str(tmp_path / "b")]) == 2


def test_shards_run_on_different_days_merge_into_the_files_of_a_single_run(tiny_dated, prompts_csv, tmp_path, clock):
    from gpi_desktop.core.cluster.sbatch import ClusterSettings, write_job_folder
    from gpi_desktop.core.job.job import with_settings

    # Batch size 1: waves of 4 prompts, so both tasks get some (a job folder never holds an idle task).
    job = write_job_folder(
        tmp_path / "job",
        with_settings(spec_for(tiny_dated, prompts_csv), batch_size=1),
        ClusterSettings(shards=2, gpus_per_task=0),
    ).folder  # prepared on day 1
    for index, day in ((1, DAY2), (2, DAY3)):
        clock.day = day
        assert (
            main(
                [
                    "run",
                    "--job",
                    str(job / "job.json"),
                    "--shard",
                    f"{index}/2",
                    "--out",
                    str(job / "shards" / str(index)),
                    "--quiet",
                ]
            )
            == 0
        )
    assert main(["merge", str(job / "shards"), "--out", str(tmp_path / "merged"), "--quiet"]) == 0
    clock.day = dt.date(2026, 4, 20)
    assert main(["run", "--job", str(job / "job.json"), "--out", str(tmp_path / "single"), "--quiet"]) == 0

    got, want = digest(tmp_path / "merged"), digest(tmp_path / "single")
    assert {k: v for k, v in got.items() if k != "manifest.json"} == {
        k: v for k, v in want.items() if k != "manifest.json"
    }
    merged, single = manifest(tmp_path / "merged"), manifest(tmp_path / "single")
    merged.pop("sharded")
    assert merged == single
    assert single["prompt_template"]["date"] == "2026-03-30"


def test_every_rows_token_count_and_token_ids_checksum_are_in_the_csv_and_manifest(
    tiny_dated, prompts_csv, tmp_path, clock
):
    spec = spec_for(tiny_dated, prompts_csv)
    outcome = run_job(JobRun(spec, load_prompts(spec), tmp_path / "journal"))
    export_run(outcome, tmp_path / "out")
    renderer = make_renderer(outcome_tokenizer(tiny_dated), "create", "gpi_pack", {}, "2026-03-30")
    ids = [renderer.encode(p) for p in PROMPTS]
    frame = pd.read_csv(
        tmp_path / "out" / "generated_texts.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False
    )
    assert frame["prompt tokens"].tolist() == [str(len(i)) for i in ids]
    # Recomputed here without the program's own helper: the rule the manifest states.
    wanted = [hashlib.sha256(",".join(map(str, i)).encode()).hexdigest() for i in ids]
    assert frame["prompt token ids sha256"].tolist() == wanted == [token_ids_sha256(i) for i in ids]
    data = manifest(tmp_path / "out")
    assert data["prompt_tokens"]["count"] == [len(i) for i in ids]
    assert data["prompt_tokens"]["token_ids_sha256"] == wanted
    example = data["prompt_template"]["example"]
    assert example["row"] == 0 and example["token_ids"] == ids[0] and example["token_ids_sha256"] == wanted[0]
    template_text = outcome_tokenizer(tiny_dated).chat_template
    assert data["prompt_template"]["template_sha256"] == hashlib.sha256(template_text.encode()).hexdigest()


def outcome_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)

"""`inspect` says what an export was made with and checks its files; `compare` tells a replication from a near one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gpi_desktop.cli import main
from gpi_desktop.core.job.job import JobRun, JobSpec, export_run, load_prompts, run_job
from gpi_desktop.core.output.compare import compare_exports
from gpi_desktop.core.output.provenance import inspect_export
from gpi_desktop.core.vocabulary.errors import InputError
from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings


def make_export(folder: Path, model: Path, prompts: Path, **settings) -> Path:
    spec = JobSpec(
        prompts,
        "text",
        RunSettings(model=str(model), max_new_tokens=6, batch_size=2, device="cpu", **settings),
        ExportSettings(),
    )
    export_run(run_job(JobRun(spec, load_prompts(spec), folder / "journal")), folder / "export")
    return folder / "export"


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tiny_dated):
    import pandas as pd
    from conftest import PROMPTS

    root = tmp_path_factory.mktemp("exports")
    prompts = root / "prompts.csv"
    pd.DataFrame({"id": range(len(PROMPTS)), "text": PROMPTS}).to_csv(prompts, index=False)
    return {
        "a": make_export(root / "a", tiny_dated, prompts, template_date="2024-07-26"),
        "again": make_export(root / "again", tiny_dated, prompts, template_date="2024-07-26"),
        "one": make_export(root / "one", tiny_dated, prompts, template_date="2024-07-26", strategy="one-at-a-time"),
        "later": make_export(root / "later", tiny_dated, prompts, template_date="2025-01-09"),
    }


def copy(export: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(export, tmp_path / "copy"))


def test_inspect_says_in_plain_words_what_the_export_was_made_with(exports, tiny_dated, capsys):
    assert main(["inspect", str(exports["a"])]) == 0
    out = capsys.readouterr().out
    assert f"Model: {tiny_dated}" in out
    assert "Template date: 2024-07-26 (given with the job); the template writes it into every prompt." in out
    assert "Row 0 as the model was given it" in out and "Today Date: 26 Jul 2024" in out
    assert "Prompt tokens:" in out and "Chat template sha256:" in out
    assert (
        "Checksums: all 11 files match the manifest, so they are unchanged since the export was written (a check "
        "against damage, not against deliberate edits;"
    ) in out  # 8 vectors, pkl, csv, npy


def test_inspect_names_a_changed_and_a_missing_file_and_exits_2(exports, tmp_path, capsys):
    folder = copy(exports["a"], tmp_path)
    (folder / "hidden" / "hidden_3.pt").write_bytes(b"not the vector")
    (folder / "hidden_states.npy").unlink()
    assert main(["inspect", str(folder)]) == 2
    out = capsys.readouterr().out
    assert "2 of 11 files do not match" in out
    assert "hidden/hidden_3.pt (changed)" in out and "hidden_states.npy (missing)" in out


def test_inspect_of_an_earlier_versions_export_says_what_is_not_recorded(exports, tmp_path):
    folder = copy(exports["a"], tmp_path)
    data = json.loads((folder / "manifest.json").read_text())
    del data["prompt_template"], data["prompt_tokens"]
    (folder / "manifest.json").write_text(json.dumps(data))
    report = inspect_export(folder)
    text = "\n".join(report.lines())
    assert report.ok
    assert "Template date and template checksum: not recorded" in text
    assert "prompt tokens and token ids checksum: not recorded" in text


def test_inspect_refuses_a_folder_that_is_no_export_in_plain_words(tmp_path, capsys):
    with pytest.raises(InputError, match="manifest.json"):
        inspect_export(tmp_path)
    assert main(["inspect", str(tmp_path)]) == 2
    assert "not a finished GPI Desktop export" in capsys.readouterr().err


def test_two_runs_of_one_job_compare_as_an_exact_replication(exports, capsys):
    assert main(["compare", str(exports["a"]), str(exports["again"])]) == 0
    out = capsys.readouterr().out
    assert "An exact replication" in out
    assert "Texts: 8 of 8 identical (100.0%)." in out
    assert "largest |difference| 0;" in out
    comparison = compare_exports(exports["a"], exports["again"])
    assert comparison.made_the_same_way and comparison.identical_results


def test_another_strategy_is_made_the_same_way_and_measured(exports):
    comparison = compare_exports(exports["a"], exports["one"])
    assert comparison.made_the_same_way  # batch size and strategy do not change the numbers by contract
    assert comparison.vectors is not None and comparison.vectors.max_abs_difference < 1e-4
    assert comparison.vectors.min_cosine > 0.9999


def test_another_template_date_is_named_and_the_differences_measured(exports):
    comparison = compare_exports(exports["a"], exports["later"])
    text = "\n".join(comparison.lines())
    assert not comparison.made_the_same_way
    assert "Template date: DIFFERENT (A: 2024-07-26, used by the template; B: 2025-01-09" in text
    assert "Model input (every row's token ids): DIFFERENT (other tokens in 8 of 8 rows: 0, 1" in text
    assert "Model: same" in text and "Input file: same" in text
    a = np.load(exports["a"] / "hidden_states.npy")
    b = np.load(exports["later"] / "hidden_states.npy")
    assert comparison.vectors.max_abs_difference == pytest.approx(float(np.abs(a - b).max()), rel=1e-6)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert comparison.vectors.min_cosine == pytest.approx(float(cos.min()), abs=1e-6)


def test_the_sheet_of_a_workbook_of_several_is_said_by_inspect_and_told_apart_by_compare(exports, tmp_path, capsys):
    folders = []
    for sheet in ("pilot", "main study"):
        folder = Path(shutil.copytree(exports["a"], tmp_path / sheet))
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["input"]["sheet"] = sheet  # as an export of that sheet of a workbook records it
        (folder / "manifest.json").write_text(json.dumps(manifest))
        folders.append(folder)
    main(["inspect", str(folders[0])])
    assert "Prompts: column 'text' of sheet 'pilot' of prompts.csv" in capsys.readouterr().out
    comparison = compare_exports(*folders)
    assert not comparison.made_the_same_way
    assert compare_exports(exports["a"], exports["again"]).made_the_same_way  # no sheet recorded: nothing to tell


def test_compare_says_when_exports_differ_because_they_were_computed_differently(exports, tmp_path):
    folder = copy(exports["again"], tmp_path)
    data = json.loads((folder / "manifest.json").read_text())
    assert data["numbers"]["rows_independent_of_batch"] is True  # float32 on the CPU: row-exact kernels
    data["numbers"].update(cpu_instruction_set="AVX2", threads=16)
    (folder / "manifest.json").write_text(json.dumps(data))
    matrix = np.load(folder / "hidden_states.npy")
    matrix[0, 0] = np.nextafter(matrix[0, 0], np.float32(1))  # the last digit of one number
    np.save(folder / "hidden_states.npy", matrix)
    comparison = compare_exports(exports["a"], folder)
    text = "\n".join(comparison.lines())
    assert comparison.made_the_same_way and not comparison.identical_results
    assert "computed differently" in comparison.verdict() and "instruction set" in comparison.verdict()
    assert "Computed with: DIFFERENT (A: cpu, " in text and "16 threads" in text
    assert "Computed with: same (cpu, " in "\n".join(compare_exports(exports["a"], exports["again"]).lines())

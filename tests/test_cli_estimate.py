"""`gpi-desktop estimate` end to end: flags, the report folder, exit codes."""

from __future__ import annotations

import json

import pytest
from estimate_folders import study_table, write_gpi_pack_folder, write_our_export
from estimate_sim import simulate

from gpi_desktop.cli import main
from gpi_desktop.core.vocabulary.errors import EXIT_BAD_INPUT, EXIT_OK

REPORT_FILES = {"estimate.json", "estimate.csv", "scores.csv", "propensity.png", "validation_loss.png", "methods.txt"}


# Small networks train several times faster on one thread than on a shared, loaded machine's two.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def study():
    return simulate(64, 8, seed=7)


def test_estimate_writes_the_report_from_our_export(study, tmp_path, capsys):
    export = write_our_export(study, tmp_path / "export", tmp_path / "prompts.csv")
    out = tmp_path / "report"
    code = main(
        [
            "estimate",
            "--vectors",
            str(export),
            "--treatment",
            "group",
            "--treated",
            "short",
            "--outcome",
            "score",
            "--epochs",
            "2",
            "--seed",
            "3",
            "--cluster",
            "region",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == EXIT_OK
    assert {p.name for p in out.iterdir()} == REPORT_FILES
    record = json.loads((out / "estimate.json").read_text(encoding="utf-8"))
    assert record["n_used"] == 64 and record["n_clusters"] == 2 and record["seed"] == 3
    assert record["se"] > 0 and record["ci95"][0] < record["ate"] < record["ci95"][1]
    assert record["data"]["sha256"] == json.loads((export / "manifest.json").read_text())["input"]["sha256"]
    assert record["vectors"]["model"] == "tiny-test-model" and len(record["folds"]) == 2
    assert record["settings"]["epochs"] == 2 and record["versions"]["torch"]
    methods = (out / "methods.txt").read_text(encoding="utf-8")
    assert "seed 3" in methods and "Imai" in methods and "clustered by region (2 clusters)" in methods
    assert (out / "propensity.png").read_bytes().startswith(b"\x89PNG")
    printed = capsys.readouterr()
    assert printed.out.startswith("ATE ") and "64 rows used" in printed.out and printed.err == ""


def test_estimate_reads_a_gpi_pack_folder_with_a_data_file_and_refuses_a_full_folder(study, tmp_path, capsys):
    folder = write_gpi_pack_folder(study, tmp_path / "hidden")
    study_table(study).to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "report"
    args = [
        "estimate",
        "--vectors",
        str(folder),
        "--data",
        str(tmp_path / "data.csv"),
        "--treatment",
        "group",
        "--treated",
        "short",
        "--outcome",
        "score",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == EXIT_OK
    first = (out / "estimate.json").read_bytes()
    assert main(args) == EXIT_BAD_INPUT
    assert "already holds an earlier report" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == EXIT_OK
    assert (out / "estimate.json").read_bytes() == first  # the same seed: the same numbers


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (["--treated", "medium"], "The treated value 'medium' is not in the treatment column 'group'"),
        (["--outcome", "prompt"], "The outcome column 'prompt' of data.csv must hold numbers"),
        (["--folds", "1"], "The number of folds must be 2 or more"),
        (["--confounders", "score"], "A confounder cannot be the treatment or the outcome column"),
    ],
)
def test_estimate_says_what_is_wrong_in_one_sentence_with_exit_code_2(study, tmp_path, capsys, change, words):
    folder = write_gpi_pack_folder(study, tmp_path / "hidden")
    study_table(study).to_csv(tmp_path / "data.csv", index=False)
    args = [
        "estimate",
        "--vectors",
        str(folder),
        "--data",
        str(tmp_path / "data.csv"),
        "--treatment",
        "group",
        "--treated",
        "short",
        "--outcome",
        "score",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "report"),
    ]
    assert main([*args, *change]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "report").exists()


def test_estimate_asks_which_value_is_treated_with_the_flag(study, tmp_path, capsys):
    folder = write_gpi_pack_folder(study, tmp_path / "hidden")
    study_table(study).to_csv(tmp_path / "data.csv", index=False)
    code = main(
        [
            "estimate",
            "--vectors",
            str(folder),
            "--data",
            str(tmp_path / "data.csv"),
            "--treatment",
            "group",
            "--outcome",
            "score",
            "--out",
            str(tmp_path / "report"),
        ]
    )
    assert code == EXIT_BAD_INPUT
    assert "say which one means treated with --treated VALUE" in capsys.readouterr().err


def test_a_stopped_estimate_exits_130_and_says_no_report_was_written(study, tmp_path, capsys, monkeypatch):
    from gpi_desktop.core.estimate import run as run_module
    from gpi_desktop.core.vocabulary.errors import EXIT_CANCELLED, Cancelled

    def stopped(*_args, **_kwargs):
        raise Cancelled()

    monkeypatch.setattr(run_module, "run_estimate", stopped)
    folder = write_gpi_pack_folder(study, tmp_path / "hidden")
    code = main(
        [
            "estimate",
            "--vectors",
            str(folder),
            "--data",
            str(tmp_path / "data.csv"),
            "--treatment",
            "group",
            "--outcome",
            "score",
            "--out",
            str(tmp_path / "report"),
        ]
    )
    assert code == EXIT_CANCELLED
    assert capsys.readouterr().err.strip() == "Stopped; no report was written."

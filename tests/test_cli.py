"""`gpi-desktop run` end to end on a tiny model: export, resume after kill -9, cancel, bad input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_helpers import MAX_NEW, base_args, folder_digest, run_cli, wait_for_journal_rows
from conftest import PROMPTS


def load_hiddens(directory: Path, ids, prefix="hidden_"):
    """What gpi_pack.TarNet.load_hiddens does: one torch.load per data row, stacked."""
    return torch.cat([torch.load(f"{directory}/{prefix}{k}.pt") for k in ids]).numpy()


def test_run_writes_an_export_gpi_pack_loads(tiny_llama, prompts_csv, tmp_path):
    out = tmp_path / "out"
    assert run_cli(*base_args(tiny_llama, prompts_csv, out, "--pooling", "mean")) == 0
    df = pd.read_csv(prompts_csv)
    hidden = load_hiddens(out / "hidden", df.index.tolist())
    assert hidden.shape == (len(PROMPTS), 64)
    np.testing.assert_array_equal(hidden, np.load(out / "hidden_states.npy"))
    texts = pd.read_pickle(out / "generated_texts.pkl")
    assert list(texts.columns) == ["X", "P"]
    assert texts["P"].tolist() == PROMPTS
    assert not (out / ".gpi-run").exists()


def test_custom_prefix_and_save_name(tiny_llama, prompts_csv, tmp_path):
    out = tmp_path / "out"
    assert run_cli(*base_args(tiny_llama, prompts_csv, out, "--prefix", "h_", "--save-name", "texts")) == 0
    assert (out / "hidden" / "h_0.pt").exists() and (out / "texts.pkl").exists() and (out / "texts.csv").exists()


def _spawn(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, GPI_DESKTOP_LOG_DIR=str(Path(args[args.index("--out") + 1]).parent / "logs"))
    return subprocess.Popen(
        [sys.executable, "-m", "gpi_desktop", "run", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_killed_run_resumes_to_identical_files(tiny_llama, tmp_path):
    many = tmp_path / "many.csv"
    pd.DataFrame({"text": [f"{p} ({i})" for i in range(8) for p in PROMPTS]}).to_csv(many, index=False)
    reference = tmp_path / "reference"
    assert run_cli(*base_args(tiny_llama, many, reference, "--batch-size", "2")) == 0

    out = tmp_path / "killed"
    proc = _spawn(base_args(tiny_llama, many, out, "--batch-size", "2"))
    wait_for_journal_rows(out, proc, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = (out / ".gpi-run" / "records.jsonl").read_bytes().count(b"\n")
    assert 3 <= done_before < 8 * len(PROMPTS)
    assert not (out / "manifest.json").exists()

    # Without --resume the unfinished run is protected.
    assert run_cli(*base_args(tiny_llama, many, out)) == 2
    assert run_cli(*base_args(tiny_llama, many, out, "--batch-size", "2", "--resume")) == 0
    assert folder_digest(out) == folder_digest(reference)


def test_a_journal_that_cannot_be_resumed_says_start_over_with_the_flag_and_not_the_windows_words(
    tiny_llama, prompts_csv, tmp_path, capsys
):
    import json

    out = tmp_path / "out"
    proc = _spawn(base_args(tiny_llama, prompts_csv, out, "--batch-size", "1", "--max-new-tokens", "40"))
    wait_for_journal_rows(out, proc, 1)
    proc.kill()
    proc.wait()
    header_path = out / ".gpi-run" / "journal.json"
    header = json.loads(header_path.read_text(encoding="utf-8"))
    del header["plan"]["batch_size"]
    del header["crc"]  # a journal of a version before the header's seal, which could lose its plan
    header_path.write_text(json.dumps(header), encoding="utf-8")
    capsys.readouterr()
    assert (
        run_cli(*base_args(tiny_llama, prompts_csv, out, "--batch-size", "1", "--max-new-tokens", "40", "--resume"))
        == 2
    )
    assert capsys.readouterr().err.strip() == (
        f"gpi-desktop: The unfinished run in '{out / '.gpi-run'}' has lost its batch plan, so resuming it would not "
        "give the same files: start over with --overwrite."
    )
    assert (
        run_cli(*base_args(tiny_llama, prompts_csv, out, "--batch-size", "1", "--max-new-tokens", "40", "--overwrite"))
        == 0
    )


def test_resume_refuses_a_folder_of_another_job(tiny_llama, prompts_csv, tmp_path, capsys):
    out = tmp_path / "out"
    proc = _spawn(base_args(tiny_llama, prompts_csv, out, "--batch-size", "1"))
    wait_for_journal_rows(out, proc, 1)
    proc.kill()
    proc.wait()
    assert run_cli(*base_args(tiny_llama, prompts_csv, out, "--resume", "--pooling", "max")) == 2
    assert "setting" in capsys.readouterr().err.lower()


def test_interrupt_exits_130_and_keeps_finished_prompts(tiny_llama, prompts_csv, tmp_path):
    out = tmp_path / "out"
    proc = _spawn(base_args(tiny_llama, prompts_csv, out, "--batch-size", "1", "--max-new-tokens", "40"))
    wait_for_journal_rows(out, proc, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"--resume" in err
    assert (out / ".gpi-run" / "records.jsonl").read_bytes().count(b"\n") >= 1
    assert not (out / "manifest.json").exists()


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "case, needle",
    [
        ("missing-file", "not"),
        ("unknown-column", "text"),
        ("empty-cells", "empty"),
        ("unreadable", ""),
        ("not-a-model", "config.json"),
        ("max-new-tokens", "at least 1"),
        ("non-empty-out", "--overwrite"),
        ("bad-option", "greedy"),
        ("empty-model", "no model"),
        ("damaged-weights", "download the model again"),
    ],
)
def test_bad_input_exits_2_with_one_sentence_and_writes_nothing(
    case, needle, tiny_llama, prompts_csv, tmp_path, capsys
):
    out = tmp_path / "out"
    model, prompts, extra = tiny_llama, prompts_csv, []
    if case == "missing-file":
        prompts = tmp_path / "nope.csv"
    elif case == "unknown-column":
        extra = ["--column", "speech"]
    elif case == "empty-cells":
        prompts = _write(tmp_path / "gaps.csv", "id,text\n0,hello\n1,\n2,world\n3,\n")
    elif case == "unreadable":
        prompts = tmp_path / "junk.xlsx"
        prompts.write_bytes(os.urandom(2000))
    elif case == "not-a-model":
        model = tmp_path / "empty-model"
        model.mkdir()
    elif case == "max-new-tokens":
        extra = ["--max-new-tokens", "0"]
    elif case == "non-empty-out":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "bad-option":
        extra = ["--generation-option", "do_sample=true"]
    elif case == "empty-model":
        model = ""  # not the default model: an empty --model is a mistake
    elif case == "damaged-weights":  # a download or copy that stopped halfway through the weights
        model = Path(shutil.copytree(tiny_llama, tmp_path / "cut-model"))
        weights = model / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    before = sorted(tmp_path.rglob("*"))
    code = run_cli(*base_args(model, prompts, out, *extra))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert needle.lower() in err.lower()
    assert sorted(tmp_path.rglob("*")) == before


def test_unknown_column_lists_the_columns(tiny_llama, prompts_csv, tmp_path, capsys):
    assert run_cli(*base_args(tiny_llama, prompts_csv, tmp_path / "o", "--column", "speech")) == 2
    err = capsys.readouterr().err
    assert "id" in err and "text" in err


def test_empty_cells_are_listed_by_row(tiny_llama, tmp_path, capsys):
    prompts = _write(tmp_path / "gaps.csv", "id,text\n0,hello\n1,\n2,world\n3,\n")
    assert run_cli(*base_args(tiny_llama, prompts, tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "1" in err and "3" in err


def test_overwrite_replaces_an_earlier_export(tiny_llama, prompts_csv, tmp_path):
    out = tmp_path / "out"
    assert run_cli(*base_args(tiny_llama, prompts_csv, out)) == 0
    assert run_cli(*base_args(tiny_llama, prompts_csv, out)) == 2
    assert run_cli(*base_args(tiny_llama, prompts_csv, out, "--overwrite", "--pooling", "max")) == 0
    import json

    assert json.loads((out / "manifest.json").read_text())["settings"]["pooling"] == "max"


def test_generation_and_template_options_are_recorded(tiny_llama, prompts_csv, tmp_path):
    import json

    out = tmp_path / "out"
    assert (
        run_cli(
            *base_args(
                tiny_llama,
                prompts_csv,
                out,
                "--generation-option",
                "repetition_penalty=1.2",
                "--template-option",
                "custom_flag=true",
            )
        )
        == 0
    )
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert settings["generation_options"] == {"repetition_penalty": 1.2}
    assert settings["template_options"] == {"custom_flag": True}


def test_system_role_fallback_is_recorded(tiny_qwen, prompts_csv, tmp_path):
    import json

    out = tmp_path / "out"
    assert run_cli(*base_args(tiny_qwen, prompts_csv, out)) == 0
    assert json.loads((out / "manifest.json").read_text())["settings"]["system_role_fallback"] is True


def test_a_duplicate_column_name_is_refused_unguessed_and_said_when_chosen(tiny_llama, tmp_path, capsys):
    prompts = _write(tmp_path / "dup.csv", "id,prompt,prompt\n0,hello there,second copy\n1,good day,other\n")
    assert run_cli(*base_args(tiny_llama, prompts, tmp_path / "o")) == 2
    assert "2 columns named 'prompt'" in capsys.readouterr().err
    assert run_cli(*base_args(tiny_llama, prompts, tmp_path / "o", "--column", "prompt.1")) == 0
    assert "using 'prompt.1'" in capsys.readouterr().err
    assert pd.read_pickle(tmp_path / "o" / "generated_texts.pkl")["P"].tolist() == ["second copy", "other"]


def _must_not_load(*args, **kwargs):
    raise AssertionError("the model was loaded although the run should have been refused before")


def test_a_prompt_too_long_for_the_context_is_refused_before_loading_naming_rows_and_lengths(
    tiny_llama, tmp_path, capsys, monkeypatch
):
    import json

    model = Path(shutil.copytree(tiny_llama, tmp_path / "short-context"))
    config = json.loads((model / "config.json").read_text())
    config["max_position_embeddings"] = 128  # the chat template alone takes about 70
    (model / "config.json").write_text(json.dumps(config))
    long = " ".join(["word"] * 80)
    prompts = _write(tmp_path / "p.csv", f"text\nshort one\n{long}\nanother short\n{long} {long}\n")
    monkeypatch.setattr("gpi_desktop.core.model.models.load_model", _must_not_load)
    code = run_cli(*base_args(model, prompts, tmp_path / "o"))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "rows 1 (" in err and ", 3 (" in err and "0 (" not in err
    assert "at most 128 tokens" in err and f"at most {128 - int(MAX_NEW)}" in err
    assert not (tmp_path / "o").exists()


def test_a_prompt_too_long_for_the_model_is_refused_as_too_long_before_the_memory_estimate_refuses_it(
    tiny_llama, tmp_path, capsys, monkeypatch
):
    from gpi_desktop.core.model import memory

    # The campaign's case: a 1 MB prompt, which the memory estimate alone refused ("2.0 TB ... --ignore-memory-check").
    prompts = _write(tmp_path / "p.csv", "text\nshort one\n" + "word " * 200_000 + "\n")
    tiny_ram = memory.DeviceMemory("this computer's memory (RAM)", 100_000, 200_000)
    monkeypatch.setattr(memory, "available_memory", lambda device="auto": [tiny_ram])
    monkeypatch.setattr("gpi_desktop.core.model.models.load_model", _must_not_load)
    code = run_cli(*base_args(tiny_llama, prompts, tmp_path / "o"))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "too long" in err and "row 1 (" in err and "memory" not in err and "--ignore-memory-check" not in err


def _workbook(path: Path) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "pilot"
    for row in (["text"], ["pilot prompt"]):
        book.active.append(row)
    study = book.create_sheet("study")
    for row in (["text"], *([p] for p in PROMPTS[:3])):
        study.append(row)
    book.save(path)
    return path


def test_a_workbook_of_several_sheets_says_which_it_reads_and_sheet_picks_another(tiny_llama, tmp_path, capsys):
    book = _workbook(tmp_path / "study.xlsx")
    assert run_cli(*base_args(tiny_llama, book, tmp_path / "first")) == 0
    assert (
        "gpi-desktop: note: study.xlsx has 2 sheets; the prompts are read from 'pilot' (the first), not from "
        "'study'; choose another with --sheet NAME."
    ) in capsys.readouterr().err
    assert pd.read_pickle(tmp_path / "first" / "generated_texts.pkl")["P"].tolist() == ["pilot prompt"]
    assert run_cli(*base_args(tiny_llama, book, tmp_path / "study", "--sheet", "study")) == 0
    assert pd.read_pickle(tmp_path / "study" / "generated_texts.pkl")["P"].tolist() == PROMPTS[:3]
    assert run_cli(*base_args(tiny_llama, book, tmp_path / "none", "--sheet", "Study")) == 2
    assert "has no sheet named 'Study'; its sheets are 'pilot', 'study'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, words",
    [
        ("unknown_kw=1", "The generation option 'unknown_kw' is neither a transformers generation setting"),
        (
            "repetition_penalty=-1",
            "The generation option repetition_penalty=-1 cannot be used: repetition_penalty takes",
        ),
    ],
)
def test_a_generation_option_the_model_would_not_accept_exits_2_before_loading_or_writing(
    option, words, tiny_llama, prompts_csv, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("gpi_desktop.core.model.models.load_model", _must_not_load)
    code = run_cli(*base_args(tiny_llama, prompts_csv, tmp_path / "o", "--generation-option", option))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and words in err
    assert not (tmp_path / "o").exists()  # no .gpi-run left behind


def test_a_will_not_fit_memory_verdict_stops_the_run_before_loading_unless_the_user_insists(
    tiny_llama, prompts_csv, tmp_path, capsys, monkeypatch
):
    from gpi_desktop.core.model import memory

    tiny_ram = memory.DeviceMemory("this computer's memory (RAM)", 100_000, 200_000)
    monkeypatch.setattr(memory, "available_memory", lambda device="auto": [tiny_ram])
    with monkeypatch.context() as patch:
        patch.setattr("gpi_desktop.core.model.models.load_model", _must_not_load)
        code = run_cli(*base_args(tiny_llama, prompts_csv, tmp_path / "o"))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "will not fit" in err and "--ignore-memory-check" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
    assert run_cli(*base_args(tiny_llama, prompts_csv, tmp_path / "o", "--ignore-memory-check")) == 0
    assert (tmp_path / "o" / "manifest.json").exists()


def test_a_command_module_that_cannot_be_imported_stops_the_program_instead_of_hiding_its_command():
    # The old entry point caught ImportError around the cluster commands, so a broken module silently removed `merge`.
    code = (
        "import sys; sys.modules['gpi_desktop.cli.merge'] = None\n"
        "from gpi_desktop.cli import main\n"
        "sys.exit(main(['merge', '--help']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "gpi_desktop.cli.merge" in proc.stderr and "Traceback" in proc.stderr
    assert "usage" not in proc.stdout

"""core/output/verify.py: the export checks the self-test and the GPU check share pass on a run's export and catch
what a broken export gets wrong."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from conftest import PROMPTS

from gpi_desktop.cli import main
from gpi_desktop.core.output.verify import export_checks

MAX_NEW = 12


@pytest.fixture(scope="module")
def export(tiny_llama, tmp_path_factory):
    base = tmp_path_factory.mktemp("export-checks")
    prompts = base / "prompts.csv"
    pd.DataFrame({"id": range(len(PROMPTS)), "text": PROMPTS}).to_csv(prompts, index=False)
    out = base / "out"
    assert (
        main(
            [
                "run",
                "--model",
                str(tiny_llama),
                "--prompts",
                str(prompts),
                "--out",
                str(out),
                "--max-new-tokens",
                str(MAX_NEW),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    return out


def failed(folder, **kwargs) -> list[str]:
    return [c.what for c in export_checks(folder, PROMPTS, max_new_tokens=MAX_NEW, **kwargs) if not c.ok]


def test_a_runs_export_passes_every_check_and_both_stop_reasons_are_counted(export):
    checks = export_checks(export, PROMPTS, max_new_tokens=MAX_NEW, hidden_size=64)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    stops = next(c for c in checks if "stopped at its end of text" in c.what)
    assert "at the end of text" in stops.detail and "at the limit" in stops.detail


def test_a_missing_hidden_file_and_a_changed_file_fail(export, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(export, broken)
    (broken / "hidden" / "hidden_3.pt").unlink()
    problems = failed(broken)
    assert any("holds hidden_0.pt" in p for p in problems) and any("sha256" in p for p in problems)


def test_a_row_that_stopped_short_without_its_end_of_text_fails(export, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(export, broken)
    csv = broken / "generated_texts.csv"
    table = pd.read_csv(csv, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    row = table.index[table["stop reason"] == "token limit"][0]
    table.loc[row, "tokens"] = str(MAX_NEW - 1)  # "stopped at the limit" after fewer tokens than the limit
    csv.write_bytes(("\ufeff" + table.to_csv(index=False, lineterminator="\r\n")).encode("utf-8"))
    assert any("stopped at its end of text or at exactly" in p for p in failed(broken))


def test_texts_other_than_the_runs_own_fail(export):
    texts = pd.read_pickle(export / "generated_texts.pkl")["X"].tolist()
    assert failed(export, texts=texts) == []
    assert any("generated_texts.pkl" in p for p in failed(export, texts=[t + "!" for t in texts]))

"""benchmarks/gpu_check.sh, the GPU check prepared for the day a GPU is lent: its dry run on the CPU runs every
part and passes (so the script cannot rot unseen), a part that fails makes it exit non-zero, and it is clean
under shellcheck. The dry run here is reduced (4 prompts x 4 tokens) to keep CI quick; it takes every part's
code path the GPU run takes, except the bitsandbytes loads and the CUDA memory limit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpi_desktop.core.model.tinymodel import (
    LLAMA_31_8B_CONFIG,
    llama_31_8b_spec,
    tiny_model,
)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def dry_run(work: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--work", str(work), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
        check=False,
    )


def table_rows(work: Path) -> dict[str, str]:
    lines = (work / "table.md").read_text(encoding="utf-8").splitlines()
    return {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and "---" not in line}


def test_the_dry_run_passes_every_part_but_the_quantized_loads_and_prints_one_table(tmp_path):
    work = tmp_path / "work"
    done = dry_run(work, "--prompts", "4", "--new-tokens", "4")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    rows = table_rows(work)
    assert sorted(rows) == ["a", "b", "c", "d", "e", "part"]
    for part in "abcd":
        assert "| pass " in rows[part], rows[part]
    assert "| skipped " in rows["e"] and "bitsandbytes" in rows["e"]
    assert "4 prompts x 4 tokens" in rows["a"] and "at the limit" in rows["a"]
    assert "auto batch" in rows["b"] and "tokens/s" in rows["b"]
    assert rows["c"].count("texts equal") == 3 and "one at a time" in rows["c"]
    assert "batch halved 1 times: 4 -> 2" in rows["d"] and "all 4 prompts exported and checked" in rows["d"]
    assert (work / "table.md").read_text(encoding="utf-8").strip() in done.stdout
    model_folder = Path(done.stdout.splitlines()[0].split("model folder ")[1])
    assert not model_folder.exists()  # 16 GB on the GPU machine: removed unless --keep


def test_a_part_that_fails_makes_the_check_exit_non_zero(tmp_path):
    work = tmp_path / "work"
    # No batch fits, not even one prompt: the run stops out of memory, so part d's check must fail.
    done = dry_run(work, "--parts", "d", "--oom-rows", "0", "--prompts", "2", "--new-tokens", "2")
    assert done.returncode == 1, done.stdout[-4000:]
    rows = table_rows(work)
    assert "| FAIL " in rows["d"] and "gpi-desktop run exited" in rows["d"]


def test_an_unknown_part_is_refused():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--parts", "z"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode != 0 and "unknown part(s): z" in done.stderr


def test_the_script_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt install shellcheck; .ci/run installs it)")
    check = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout


def test_the_gpu_model_has_llama_31_8b_exact_shape():
    model, tokenizer = tiny_model(llama_31_8b_spec(device="meta", dtype="bfloat16"))
    assert sum(p.numel() for p in model.parameters()) == 8_030_261_248  # Llama-3.1-8B's parameter count
    assert model.dtype.is_floating_point and str(model.dtype) == "torch.bfloat16"
    assert model.get_output_embeddings().weight.shape == (LLAMA_31_8B_CONFIG["vocab_size"], 4096)
    assert len(tokenizer) < LLAMA_31_8B_CONFIG["vocab_size"]
    assert model.config.rope_parameters["rope_type"] == "llama3"

"""Same inputs, same numbers (issue 29): a row's text and vector are bit-identical whatever else is in the job,
and a job gives the same bytes in every fresh process, whatever ran before it and however MKL is set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import PROMPTS
from fakes import RecordingState

from gpi_desktop.core.generation import exact
from gpi_desktop.core.generation.engine import EncodedPrompt, EngineConfig, run_engine
from gpi_desktop.core.generation.instructions import make_renderer
from gpi_desktop.core.generation.prefix import template_prefix

MAX_NEW = 40
ROOT = Path(__file__).resolve().parent.parent


def run(loaded, prompts, batch_size, **kw):
    results = []
    run_engine(
        loaded,
        prompts,
        EngineConfig("mean", kw.pop("max_new_tokens", MAX_NEW), batch_size, **kw),
        RecordingState(),
        on_result=results.append,
    )
    return {r.row: r for r in results}


@pytest.fixture(scope="module")
def prefix(loaded):
    return template_prefix(make_renderer(loaded.tokenizer, "create", "gpi_pack").encode)


def assert_bit_identical(got, alone):
    for row, result in got.items():
        assert result.text == alone[row].text, row
        assert np.array_equal(result.vector, alone[row].vector), (row, np.abs(result.vector - alone[row].vector).max())


def test_a_rows_text_and_vector_do_not_depend_on_batch_size_order_or_added_rows(loaded, encoded, prefix):
    alone = run(loaded, encoded, 1, shared_prefix=prefix)
    assert len({r.n_tokens for r in alone.values()}) >= 3  # rows finish at different steps: refills, compaction
    extra = EncodedPrompt(len(encoded), encoded[2].ids + (7, 8))
    for prompts, batch in (
        (encoded, len(encoded)),
        (encoded, 3),
        (encoded[::-1], 4),
        (encoded[:5], 5),
        (encoded + [extra], 8),
    ):
        got = run(loaded, prompts, batch, shared_prefix=prefix)
        assert_bit_identical({row: got[row] for row in alone if row in got}, alone)


def test_before_issue_29_rows_depended_on_the_batch(loaded, encoded):
    alone = run(loaded, encoded, 1, row_exact=False)
    batched = run(loaded, encoded, len(encoded), row_exact=False)
    assert any(not np.array_equal(batched[row].vector, alone[row].vector) for row in alone)


def test_the_jobs_prefix_comes_from_the_template_not_the_prompts(loaded, encoded, prefix):
    assert prefix and all(p.ids[: len(prefix)] == prefix for p in encoded)
    renderer = make_renderer(loaded.tokenizer, "create", "gpi_pack")
    assert template_prefix(renderer.encode) == prefix  # no prompt of the job is read
    # Prompts that share more than the template (a common first word) still get only the template's prefix.
    assert len(template_prefix(renderer.encode)) < len(
        os.path.commonprefix([renderer.encode("Write one"), renderer.encode("Write two")])
    )


def test_a_prompt_that_does_not_start_with_the_given_prefix_gets_its_whole_pass(loaded, encoded, prefix):
    odd = EncodedPrompt(0, (prefix[0] + 1,) + encoded[0].ids[1:])
    assert not exact.applies(loaded.model) or run(loaded, [odd], 1, shared_prefix=prefix)[0].n_tokens > 0


def test_exact_kernels_are_on_only_while_the_engine_runs(loaded, encoded):
    import torch

    linears = [m for m in loaded.model.modules() if type(m) is torch.nn.Linear]
    seen = []
    handle = loaded.model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(
            (loaded.model.config._attn_implementation, all("forward" in x.__dict__ for x in linears))
        ),
        with_kwargs=True,
    )
    try:
        run(loaded, encoded[:2], 2, max_new_tokens=2)
    finally:
        handle.remove()
    assert seen and all(s == (exact.ATTENTION_NAME, True) for s in seen)
    assert loaded.model.config._attn_implementation != exact.ATTENTION_NAME
    assert not any("forward" in m.__dict__ for m in linears)
    assert "forward" not in loaded.model.base_model.rotary_emb.__dict__


def test_a_padded_prompt_pass_asked_for_turns_the_exact_kernels_off(loaded, encoded):
    seen = []
    handle = loaded.model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(loaded.model.config._attn_implementation), with_kwargs=True
    )
    try:
        run(loaded, encoded[:2], 2, max_new_tokens=2, prefill="batched")
    finally:
        handle.remove()
    assert exact.ATTENTION_NAME not in seen


# One job in a fresh process: the digest of its texts and vectors. With "other" a model of the other
# architecture runs a job first in the same process (the issue's "right after another model's run").
CHILD = """
import hashlib, json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from fakes import RecordingState
from gpi_desktop.core.generation.engine import EncodedPrompt, EngineConfig, run_engine
from gpi_desktop.core.generation.instructions import make_renderer
from gpi_desktop.core.generation.prefix import template_prefix
from gpi_desktop.core.model.models import load_model
from gpi_desktop.core.vocabulary.settings import RunSettings

def job(folder, exact):
    loaded = load_model(RunSettings(model=folder, device="cpu"))
    renderer = make_renderer(loaded.tokenizer, "create", "gpi_pack")
    prompts = [EncodedPrompt(i, tuple(renderer.encode(t))) for i, t in enumerate({prompts!r})]
    out = []
    run_engine(loaded, prompts, EngineConfig("mean", 40, len(prompts), shared_prefix=template_prefix(renderer.encode),
               row_exact=exact), RecordingState(), on_result=out.append)
    out.sort(key=lambda r: r.row)
    return hashlib.sha256(np.stack([r.vector for r in out]).tobytes() + "|".join(r.text for r in out).encode()).hexdigest()

if sys.argv[2]:
    job(sys.argv[2], True)
print(job(sys.argv[1], sys.argv[3] == "exact"))
"""


def fresh_process_digest(model: Path, other: Path | None = None, env: dict | None = None, kernels="exact") -> str:
    code = CHILD.format(tests=str(ROOT / "tests"), prompts=PROMPTS)
    done = subprocess.run(
        [sys.executable, "-c", code, str(model), str(other or ""), kernels],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_fresh_processes_give_the_same_bytes_run_after_run_and_after_another_model(tiny_llama, tiny_qwen):
    digests = [
        fresh_process_digest(tiny_llama),
        fresh_process_digest(tiny_llama, other=tiny_qwen),
        fresh_process_digest(tiny_llama),
    ]
    assert len(set(digests)) == 1, digests


def test_the_manifest_says_what_the_bytes_depend_on(loaded, monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")  # MKL's code path: part of the kernel library it names
    record = exact.numbers_record(loaded.model, row_exact=True, one_at_a_time=False)
    assert record["rows_independent_of_batch"] is True and record["device"] == "cpu"
    assert record["cpu_instruction_set"] and record["threads"] >= 1
    assert "oneDNN" in record["kernels"] and "MKL_CBWR=COMPATIBLE" in record["kernels"]
    assert "the batch" not in record["depends_on"]
    off = exact.numbers_record(loaded.model, row_exact=False, one_at_a_time=False)
    assert off["rows_independent_of_batch"] is False and "the batch" in off["depends_on"]

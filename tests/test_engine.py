"""The engine against the gpi_pack contract (docs/architecture.md): HF generate(output_hidden_states=True) on each prompt alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PROMPTS
from fakes import RecordingState

from gpi_desktop.core.generation.engine import EncodedPrompt, EngineConfig, auto_batch_size, plan_batches, run_engine
from gpi_desktop.core.vocabulary.errors import Cancelled

MAX_NEW = 40
ATOL = 1e-5


def oracle(loaded, prompt: EncodedPrompt, pooling: str, max_new_tokens: int = MAX_NEW, **gen):
    """The contract's point 4 (docs/architecture.md), written out directly on transformers' generate()."""
    ids = torch.tensor([prompt.ids])
    out = loaded.model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        output_hidden_states=True,
        return_dict_in_generate=True,
        pad_token_id=loaded.tokenizer.eos_token_id,
        **gen,
    )
    new = out.sequences[0, ids.shape[1] :].tolist()
    steps = [h[-1][0, -1, :] for h in out.hidden_states]
    if gen.get("num_beams", 1) == 1:
        assert len(steps) == len(new)
    if pooling == "last":
        vec = steps[-1]
    elif len(steps) == 1:
        vec = steps[0]
    elif pooling == "mean":
        vec = torch.stack(steps[1:]).mean(0)
    else:
        vec = torch.stack(steps[1:]).max(0).values
    return loaded.tokenizer.decode(new, skip_special_tokens=True), vec.numpy(), len(new)


def run(loaded, encoded, pooling, batch_size, state=None, **kw):
    results = []
    run_engine(
        loaded,
        encoded,
        EngineConfig(pooling, kw.pop("max_new_tokens", MAX_NEW), batch_size, **kw),
        state or RecordingState(),
        on_result=results.append,
    )
    return {r.row: r for r in results}


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("batch_size", [1, len(PROMPTS), 3])
def test_engine_matches_generate_for_each_prompt_alone(loaded, encoded, pooling, batch_size):
    got = run(loaded, encoded, pooling, batch_size)
    lengths = set()
    for p in encoded:
        text, vec, n = oracle(loaded, p, pooling)
        assert got[p.row].text == text
        assert got[p.row].n_tokens == n
        np.testing.assert_allclose(got[p.row].vector, vec, atol=ATOL, rtol=1e-4)
        assert got[p.row].vector.shape == (loaded.info.hidden_size,)
        assert got[p.row].vector.dtype == np.float32
        lengths.add(n)
    # The batch must really be uneven: rows stop at different steps, some at the limit.
    assert len(lengths) >= 3
    assert any(r.hit_limit for r in got.values()) or loaded.info.architecture.startswith("Qwen")


def test_batch_with_very_different_prompt_lengths_is_left_padded_correctly(loaded, encoded):
    lens = sorted(len(p.ids) for p in encoded)
    assert lens[-1] - lens[0] >= 40  # the fixture's prompts differ enough for padding to matter
    got = run(loaded, encoded, "mean", len(encoded))
    alone = run(loaded, encoded, "mean", 1)
    for row in alone:
        assert got[row].text == alone[row].text
        np.testing.assert_allclose(got[row].vector, alone[row].vector, atol=ATOL)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_single_generated_token_pools_prompt_pass_and_is_flagged(loaded, encoded, pooling):
    got = run(loaded, encoded[:3], pooling, 3, max_new_tokens=1)
    for p in encoded[:3]:
        _, vec, n = oracle(loaded, p, pooling, max_new_tokens=1)
        assert n == 1 and got[p.row].pooled_from_step0
        np.testing.assert_allclose(got[p.row].vector, vec, atol=ATOL)


def test_last_pooling_of_one_token_is_not_flagged(loaded, encoded):
    got = run(loaded, encoded[:2], "last", 2, max_new_tokens=1)
    assert not any(r.pooled_from_step0 for r in got.values())


def test_one_at_a_time_strategy_is_gpi_packs_procedure(loaded, encoded):
    got = run(loaded, encoded[:4], "mean", 4, one_at_a_time=True)
    for p in encoded[:4]:
        text, vec, _ = oracle(loaded, p, "mean")
        assert got[p.row].text == text
        np.testing.assert_allclose(got[p.row].vector, vec, atol=1e-6)


def test_repetition_penalty_batched_equals_generate(loaded, encoded):
    got = run(loaded, encoded, "last", 4, generation_options={"repetition_penalty": 1.3, "no_repeat_ngram_size": 3})
    for p in encoded:
        text, vec, _ = oracle(loaded, p, "last", repetition_penalty=1.3, no_repeat_ngram_size=3)
        assert got[p.row].text == text
        np.testing.assert_allclose(got[p.row].vector, vec, atol=ATOL)


def test_beam_search_option_runs_through_generate(loaded, encoded):
    got = run(loaded, encoded[:2], "last", 2, generation_options={"num_beams": 2}, max_new_tokens=8)
    for p in encoded[:2]:
        text, _, _ = oracle(loaded, p, "last", max_new_tokens=8, num_beams=2)
        assert got[p.row].text == text


def test_progress_is_reported_per_finished_prompt(loaded, encoded):
    state = RecordingState()
    run(loaded, encoded, "last", 4, state=state)
    finished = [p for p in state.progress if not p.running]
    assert [p.done for p in finished][-len(encoded) :] == list(range(1, len(encoded) + 1))
    assert all(p.total == len(encoded) for p in state.progress)
    assert state.progress[-1].tokens_per_second > 0
    assert sorted(r.row for r in state.results) == list(range(len(encoded)))


@pytest.fixture
def every_step_due(monkeypatch):
    """A clock one second further at each look, and decoding that never delays a report: every step reports."""
    from gpi_desktop.core.generation import meter

    ticks = iter(range(10**9))
    monkeypatch.setattr(meter, "now", lambda: float(next(ticks)))
    monkeypatch.setattr(meter, "DECODE_SHARE", 1e9)


@pytest.mark.parametrize("strategy", ["batched", "one-at-a-time"])
def test_running_texts_grow_token_by_token_and_progress_moves_before_any_prompt_finishes(
    loaded, encoded, every_step_due, strategy
):
    state = RecordingState()
    final = run(loaded, encoded, "last", len(encoded), state=state, one_at_a_time=strategy == "one-at-a-time")
    between = {}  # reports while the count of finished prompts stands still, by that count
    for report in state.progress:
        between.setdefault(report.done, []).append(report)
    longest = max((reports for done, reports in between.items() if done < len(encoded)), key=len)
    assert len(longest) >= 5
    done_tokens = [p.tokens_done for p in longest]
    assert done_tokens == sorted(done_tokens) and done_tokens[0] + 3 <= done_tokens[-1]
    assert all(p.seconds_left is not None and p.seconds_left > 0 and p.left_is_bound for p in longest)
    seen = 0
    for report in state.progress:
        for text in report.running:
            assert final[text.row].text.startswith(text.text)  # greedy: what is shown is final
            assert 0 < text.n_tokens <= final[text.row].n_tokens
            seen += 1
    assert seen >= len(encoded)
    fractions = [p.fraction for p in state.progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


class _CountForwards:
    def __init__(self, model):
        self.calls = 0
        self.handle = model.register_forward_hook(lambda *a: setattr(self, "calls", self.calls + 1))


def test_cancel_stops_within_one_decoding_step(loaded, encoded):
    counter = _CountForwards(loaded.model)

    class CancelAfter(RecordingState):
        def is_interruption_requested(self):
            if counter.calls >= 5 and self.at is None:
                self.at = counter.calls
            return self.at is not None

    state = CancelAfter()
    state.at = None
    try:
        with pytest.raises(Cancelled):
            run(loaded, encoded, "last", len(encoded), state=state)
    finally:
        counter.handle.remove()
    assert counter.calls - state.at <= 1


def test_skips_finished_rows_and_reruns_their_batch_identically(loaded, encoded):
    full = run(loaded, encoded, "mean", 3)
    finished = {encoded[0].row, encoded[5].row}
    rest = []
    run_engine(
        loaded,
        encoded,
        EngineConfig("mean", MAX_NEW, 3),
        RecordingState(),
        finished_rows=finished,
        on_result=rest.append,
    )
    assert {r.row for r in rest} == set(full) - finished
    for r in rest:  # same batch plan as the uninterrupted run: bit-identical vectors
        assert r.text == full[r.row].text
        assert np.array_equal(r.vector, full[r.row].vector)


def test_out_of_memory_halves_the_batch_and_keeps_going(loaded, encoded, monkeypatch):
    real_forward = loaded.model.forward

    def small_gpu(*args, **kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(loaded.model, "forward", small_gpu)
    state = RecordingState()
    got = run(loaded, encoded, "last", 8, state=state)
    monkeypatch.undo()
    expected = run(loaded, encoded, "last", 1)
    assert sorted(got) == sorted(expected)
    for row in expected:
        assert got[row].text == expected[row].text
    assert any("ran out of memory" in s for s in state.statuses)


def test_plan_groups_prompts_by_length():
    prompts = [EncodedPrompt(i, tuple(range(n))) for i, n in enumerate([5, 50, 6, 49, 7, 48])]
    batches = plan_batches(prompts, 3)
    assert [[p.row for p in b] for b in batches] == [[1, 3, 5], [4, 2, 0]]


def test_auto_batch_on_cpu_batches_several_prompts(loaded, encoded):
    assert auto_batch_size(loaded, encoded, 100) > 1
    assert auto_batch_size(loaded, encoded[:1], 100) == 1


def test_finished_rows_leave_the_batch_and_no_step_history_is_kept(loaded, encoded):
    shapes = []

    def spy(module, args, kwargs):
        assert not kwargs.get("output_hidden_states"), "every layer's state would be kept"
        assert kwargs.get("logits_to_keep") == 1, "logits for every prompt position would be computed"
        shapes.append(tuple(kwargs["input_ids"].shape))

    handle = loaded.model.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        got = run(loaded, encoded, "mean", len(encoded), prefill="batched")  # the prefix, one padded pass, then steps
    finally:
        handle.remove()
    from gpi_desktop.core.generation.engine import shared_prefix

    assert shapes.pop(0) == (1, len(shared_prefix(encoded).ids))
    batch_sizes = [s[0] for s in shapes]
    assert batch_sizes[0] == len(encoded)
    assert all(b2 <= b1 for b1, b2 in zip(batch_sizes, batch_sizes[1:]))
    assert batch_sizes[-1] == sum(1 for r in got.values() if r.n_tokens == max(x.n_tokens for x in got.values()))
    # one forward pass per step of the longest row: the prefill, then one token at a time
    assert len(shapes) == max(r.n_tokens for r in got.values())
    assert all(s[1] == 1 for s in shapes[1:])

"""The engine's speed features keep the results of docs/architecture.md: prompt pass alone, growing cache, late compaction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fakes import RecordingState

from gpi_desktop.core.generation import batch_size, cache, decode, engine
from gpi_desktop.core.generation.cache import new_cache
from gpi_desktop.core.generation.engine import EncodedPrompt, EngineConfig, auto_batch_size, run_engine

MAX_NEW = 40
ATOL = 1e-5


def run(loaded, prompts, pooling, batch_size, state=None, **kw):
    results = []
    run_engine(
        loaded,
        prompts,
        EngineConfig(pooling, kw.pop("max_new_tokens", MAX_NEW), batch_size, **kw),
        state or RecordingState(),
        on_result=results.append,
    )
    return {r.row: r for r in results}


@pytest.fixture(scope="module")
def oracle(loaded, encoded):
    """generate() on each prompt alone, per pooling, computed once per model."""
    cache = {}

    def get(pooling):
        if pooling not in cache:
            cache[pooling] = {p.row: generate_alone(loaded, p, pooling) for p in encoded}
        return cache[pooling]

    return get


def generate_alone(loaded, prompt, pooling, max_new_tokens=MAX_NEW):
    ids = torch.tensor([prompt.ids])
    out = loaded.model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        output_hidden_states=True,
        return_dict_in_generate=True,
        pad_token_id=loaded.tokenizer.eos_token_id,
    )
    steps = [h[-1][0, -1, :] for h in out.hidden_states]
    if pooling == "last":
        vec = steps[-1]
    elif len(steps) == 1:
        vec = steps[0]
    else:
        stacked = torch.stack(steps[1:])
        vec = stacked.mean(0) if pooling == "mean" else stacked.max(0).values
    new = out.sequences[0, ids.shape[1] :].tolist()
    return loaded.tokenizer.decode(new, skip_special_tokens=True), vec.numpy(), len(new)


def assert_same(got, expected, atol=ATOL):
    assert sorted(got) == sorted(expected)
    for row, (text, vec, n) in expected.items():
        assert got[row].text == text
        assert got[row].n_tokens == n
        np.testing.assert_allclose(got[row].vector, vec, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_prompt_pass_alone_then_batched_decoding_matches_generate(loaded, encoded, oracle, pooling):
    got = run(loaded, encoded, pooling, len(encoded), prefill="alone")
    assert_same(got, oracle(pooling))
    assert len({r.n_tokens for r in got.values()}) >= 3  # rows really stop at different steps


def record_input_shapes(loaded):
    shapes = []
    handle = loaded.model.register_forward_pre_hook(
        lambda m, a, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    return shapes, handle


def test_prompt_pass_alone_runs_each_prompt_unpadded_after_the_shared_prefix(loaded, encoded):
    shapes, handle = record_input_shapes(loaded)
    try:
        run(loaded, encoded[:3], "last", 3, prefill="alone", max_new_tokens=2)
    finally:
        handle.remove()
    shared = len(engine.shared_prefix(encoded[:3]).ids)
    assert shapes[:4] == [(1, shared)] + [
        (1, len(p.ids) - shared) for p in sorted(encoded[:3], key=lambda p: -len(p.ids))
    ]
    assert all(s[1] == 1 for s in shapes[4:])


def test_the_shared_prefix_is_the_instruction_and_template_and_is_computed_once_per_job(loaded, encoded, oracle):
    prefix = engine.shared_prefix(encoded)
    assert len(prefix.ids) >= 10  # the chat template's start, the system turn with the instruction, the user header
    assert all(p.ids[: len(prefix.ids)] == prefix.ids for p in encoded)
    assert len({p.ids[len(prefix.ids)] for p in encoded}) > 1  # and not one token longer
    shapes, handle = record_input_shapes(loaded)
    try:
        got = run(loaded, encoded, "mean", 3)  # three batches, one prefix pass
    finally:
        handle.remove()
    assert shapes.count((1, len(prefix.ids))) == 1 and shapes[0] == (1, len(prefix.ids))
    assert sum(1 for s in shapes if s[1] > 1) == 1 + len(encoded)
    assert_same(got, oracle("mean"))


def test_a_prompt_that_is_all_shared_prefix_gets_its_whole_pass(loaded, encoded, oracle):
    whole = encoded[2]
    short = EncodedPrompt(99, whole.ids[: len(whole.ids) - 3])  # the other's start: the job's shared prefix
    assert engine.shared_prefix([whole, short]).ids == short.ids
    shapes, handle = record_input_shapes(loaded)
    try:
        got = run(loaded, [whole, short], "mean", 2)
    finally:
        handle.remove()
    assert shapes[:3] == [(1, len(short.ids)), (1, 3), (1, len(short.ids))]
    assert_same({whole.row: got[whole.row]}, {whole.row: oracle("mean")[whole.row]})
    assert_same({99: got[99]}, {99: generate_alone(loaded, short, "mean")})


def test_no_shared_prefix_for_a_single_prompt_or_prompts_that_differ_at_once():
    assert engine.shared_prefix([EncodedPrompt(0, (1, 2, 3))]).ids == ()
    assert engine.shared_prefix([EncodedPrompt(0, (1, 2, 3)), EncodedPrompt(1, (2, 2, 3))]).ids == ()
    assert engine.shared_prefix([EncodedPrompt(0, (1, 2, 3)), EncodedPrompt(1, (1, 2, 4, 5))]).ids == (1, 2)


def test_cache_growing_past_its_chunks_changes_nothing(loaded, encoded, oracle, monkeypatch):
    monkeypatch.setattr(cache, "CACHE_CHUNK", 4)  # regrows every few steps, and while rows leave
    for prefill in ("alone", "batched"):
        got = run(loaded, encoded, "mean", 5, prefill=prefill)
        assert_same(got, oracle("mean"))


def test_large_batch_keeps_finished_rows_until_worth_dropping_and_results_hold(loaded, encoded, oracle):
    # 24 rows: a finished row stays (idle) until an eighth of the batch has finished.
    many = [EncodedPrompt(i, encoded[i % len(encoded)].ids) for i in range(24)]
    shapes = []
    handle = loaded.model.register_forward_pre_hook(
        lambda m, a, kw: shapes.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        got = run(loaded, many, "max", 24)
    finally:
        handle.remove()
    alone = oracle("max")
    assert_same(got, {p.row: alone[p.row % len(encoded)] for p in many})
    drops = [b1 - b2 for b1, b2 in zip(shapes, shapes[1:]) if b2 < b1]
    assert drops and all(d >= 3 for d in drops[:-1])  # 24 // 8 rows at least per compaction, but the last


def test_batched_results_do_not_depend_on_the_prefill_mode(loaded, encoded):
    a = run(loaded, encoded, "mean", 4, prefill="alone")
    b = run(loaded, encoded, "mean", 4, prefill="batched")
    for row in a:
        assert a[row].text == b[row].text
        np.testing.assert_allclose(a[row].vector, b[row].vector, atol=ATOL)


def test_unknown_prefill_mode_is_refused(loaded, encoded):
    with pytest.raises(ValueError):
        run(loaded, encoded[:1], "last", 1, prefill="sideways")


def test_auto_prefill_is_alone_unless_the_cache_cannot_be_copied():
    config = EngineConfig("last", 4, 2)
    assert engine.resolve_prefill(config, True) == "alone"
    assert engine.resolve_prefill(config, False) == "batched"  # sliding-window and other cache kinds
    assert engine.resolve_prefill(EngineConfig("last", 4, 2, prefill="batched"), True) == "batched"


def test_models_with_plain_full_attention_get_the_growing_cache(loaded):
    cache, growing = new_cache(loaded.model)
    assert growing and all(type(layer).__name__ == "GrowingLayer" for layer in cache.layers)


def test_auto_batch_on_cpu_is_bounded_by_free_memory(loaded, encoded, monkeypatch):
    many = encoded * 20
    assert auto_batch_size(loaded, many, 100) == engine.CPU_AUTO_BATCH
    monkeypatch.setattr(batch_size, "_free_host_memory", lambda: 1)
    assert auto_batch_size(loaded, many, 100) == 1
    monkeypatch.setattr(batch_size, "_free_host_memory", lambda: None)  # unknown: the moderate fixed batch
    assert auto_batch_size(loaded, many, 100) == engine.CPU_AUTO_BATCH


def test_auto_batch_on_a_gpu_follows_free_memory_and_cache_size(loaded, encoded, monkeypatch):
    monkeypatch.setattr(batch_size, "input_device", lambda model: torch.device("cuda"))
    monkeypatch.setattr(batch_size, "_free_gpu_memory", lambda kind: 80 << 30)
    roomy = auto_batch_size(loaded, encoded * 100, 1000)
    assert roomy == engine.MAX_AUTO_BATCH  # a tiny model: arithmetic, not memory, is the limit
    cfg = loaded.model.config
    kv_per_token = (
        2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 4
    )
    row = kv_per_token * (max(len(p.ids) for p in encoded) + 1000 + engine.CACHE_CHUNK)
    monkeypatch.setattr(batch_size, "_free_gpu_memory", lambda kind: int(row * 10.5 / 0.9))
    tight = auto_batch_size(loaded, encoded * 100, 1000)
    assert 5 <= tight <= 10
    assert auto_batch_size(loaded, encoded * 100, 1000, prefill="batched") < tight  # activations of a padded pass


def test_out_of_memory_retry_starts_after_the_failed_attempt_is_freed(loaded, encoded, monkeypatch):
    import weakref

    caches, alive_at_retry = [], []
    real_new_cache, real_forward = decode.new_cache, loaded.model.forward

    def tracked_cache(model):
        if caches:
            alive_at_retry.append([ref() is not None for ref in caches])
        cache, growing = real_new_cache(model)
        caches.append(weakref.ref(cache))
        return cache, growing

    def small_gpu(*args, **kwargs):
        kv = kwargs.get("cache", kwargs.get("past_key_values"))
        if kwargs["input_ids"].shape[0] > 2 and kv is not None and kv.get_seq_length() > 0:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")  # mid-decoding
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(decode, "new_cache", tracked_cache)
    monkeypatch.setattr(loaded.model, "forward", small_gpu)
    state = RecordingState()
    got = run(loaded, encoded, "last", 8, state=state)
    monkeypatch.undo()
    assert sorted(got) == [p.row for p in encoded]
    assert alive_at_retry and not any(alive_at_retry[0])  # the 8-row cache was gone before the 4-row retry began
    assert sum("ran out of memory" in s for s in state.statuses) >= 2  # 8 -> 4 -> 2


def test_decoding_without_padding_passes_no_mask_and_with_padding_does(loaded, encoded):
    masks = []
    handle = loaded.model.register_forward_pre_hook(
        lambda m, a, kw: masks.append((kw["input_ids"].shape[1], kw.get("attention_mask") is not None)),
        with_kwargs=True,
    )
    try:
        run(loaded, encoded[:1], "last", 1, max_new_tokens=3)
        alone = [has for width, has in masks if width == 1]
        masks.clear()
        lengths = {len(p.ids) for p in encoded[:3]}
        assert len(lengths) > 1
        run(loaded, encoded[:3], "last", 3, max_new_tokens=3)
        padded = [has for width, has in masks if width == 1]
    finally:
        handle.remove()
    assert alone and not any(alone)
    assert padded and all(padded)


def test_a_finished_row_takes_the_waves_next_prompt_and_results_hold(loaded, encoded, oracle):
    # Batch 2, one wave of all 8 prompts: the batch stays full until the wave has no prompt left.
    shapes, handle = record_input_shapes(loaded)
    try:
        got = run(loaded, encoded, "mean", 2)
    finally:
        handle.remove()
    assert_same(got, oracle("mean"))
    prefix = len(engine.shared_prefix(encoded).ids)
    passes = [i for i, s in enumerate(shapes) if s[1] > 1 and s != (1, prefix)]
    assert len(passes) == len(encoded) and all(shapes[i][0] == 1 for i in passes)  # refills run alone
    steps = [s[0] for s in shapes[passes[-1] :] if s[1] == 1]
    # Before the last prompt joined, every decoding step ran 2 rows; the plain batches of before would
    # have run single rows whenever one of a pair finished first.
    assert all(s[0] == 2 for s in shapes[: passes[-1]] if s[1] == 1)
    assert steps and steps[0] == 2
    lengths = sorted(r.n_tokens for r in got.values())
    assert sum(1 for s in shapes if s[1] == 1) < sum(lengths) / 2 + lengths[-1]


def test_waves_are_fixed_groups_of_the_prompts_longest_first():
    prompts = [EncodedPrompt(i, tuple(range(n))) for i, n in enumerate([5, 50, 6, 49, 7, 48, 9, 3, 30])]
    waves = engine.plan_waves(prompts, 1)
    assert engine.wave_size(1) == engine.WAVE_BATCHES == 4
    assert [[p.row for p in w] for w in waves] == [[1, 3, 5, 8], [6, 4, 2, 0], [7]]
    assert engine.plan_waves(list(reversed(prompts)), 1) == waves  # the prompts alone decide, not their order


@pytest.mark.parametrize("prefill", ["alone", "batched"])
def test_a_resumed_run_reruns_whole_waves_and_is_bit_identical(loaded, encoded, prefill):
    many = [EncodedPrompt(i, encoded[i % len(encoded)].ids + (i % 5,)) for i in range(3 * len(encoded))]
    full = run(loaded, many, "mean", 2, prefill=prefill)  # waves of 8: three of them
    waves = engine.plan_waves(many, 2)
    finished = {p.row for p in waves[0]} | {waves[1][3].row, waves[2][0].row}
    rest, shapes = [], []
    handle = loaded.model.register_forward_pre_hook(
        lambda m, a, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    try:
        run_engine(
            loaded,
            many,
            EngineConfig("mean", MAX_NEW, 2, prefill=prefill),
            RecordingState(),
            finished_rows=finished,
            on_result=rest.append,
        )
    finally:
        handle.remove()
    assert {r.row for r in rest} == set(full) - finished
    for r in rest:  # the same waves and refills as the uninterrupted run: bit-identical vectors
        assert r.text == full[r.row].text
        assert np.array_equal(r.vector, full[r.row].vector)
    own_passes = sum(1 for s in shapes if s[1] > 1) - 1  # less the prefix
    assert own_passes == (16 if prefill == "alone" else 16 - 2 * 2 + 2)  # waves 2 and 3 whole, wave 1 skipped


def test_padded_pass_after_the_prefix_matches_generate(loaded, encoded, oracle):
    shapes, handle = record_input_shapes(loaded)
    try:
        got = run(loaded, encoded, "max", 4, prefill="batched")
    finally:
        handle.remove()
    assert_same(got, oracle("max"))
    prefix = len(engine.shared_prefix(encoded).ids)
    own = max(len(p.ids) for p in encoded[:]) - prefix
    assert shapes[0] == (1, prefix) and shapes[1][0] == 4 and shapes[1][1] <= own  # one pass over 4 suffixes


def test_onednn_linears_are_on_only_while_the_engine_runs_and_keep_the_numbers(loaded, encoded):
    from gpi_desktop.core.generation import cpu_linear

    linears = [m for m in loaded.model.base_model.layers.modules() if type(m) is torch.nn.Linear]
    x = torch.randn(3, linears[0].in_features)
    want = torch.nn.functional.linear(x, linears[0].weight, linears[0].bias)
    with cpu_linear.onednn_linears(loaded.model):
        assert cpu_linear.onednn_available() and all("forward" in m.__dict__ for m in linears)
        torch.testing.assert_close(linears[0](x), want, atol=1e-5, rtol=1e-5)
        one = x[:1]
        assert torch.equal(linears[0](one), torch.nn.functional.linear(one, linears[0].weight, linears[0].bias))
    assert not any("forward" in m.__dict__ for m in linears)  # the loop and generate() keep PyTorch's default
    seen = []
    real = cpu_linear._onednn_forward
    try:
        cpu_linear._onednn_forward = lambda m: (seen.append(m), real(m))[1]
        run(loaded, encoded[:2], "last", 2, max_new_tokens=2, row_exact=False)  # the row-exact kernels: exact.py
    finally:
        cpu_linear._onednn_forward = real
    assert len(seen) == len(linears)


def test_no_onednn_for_a_model_in_half_precision(loaded):
    from gpi_desktop.core.generation import cpu_linear

    half = type(
        "Half",
        (),
        {
            "dtype": torch.bfloat16,
            "base_model": loaded.model.base_model,
            "get_input_embeddings": loaded.model.get_input_embeddings,
        },
    )()
    with cpu_linear.onednn_linears(half):
        assert not any("forward" in m.__dict__ for m in loaded.model.base_model.layers.modules())

"""GPU benchmark: Llama-3.1-8B's shape in bf16, random weights, built on the GPU (no download).

    python benchmarks/gpu_benchmark.py                     # one H100/H200: the table for benchmarks/README.md
    python benchmarks/gpu_benchmark.py --tiny --device cpu # a small shape on the CPU: checks the script runs

Prints, measured in one run:
  1. tokens/s and peak GPU memory of gpi_pack's one-prompt-at-a-time
     `generate(output_hidden_states=True)` loop, of the engine at batch 1, and
     of the engine at its automatic batch size (prompt pass alone and batched);
  2. the fraction of the HBM-bandwidth bound the batched decoding reaches:
     bytes read per decoding step (weights, except the input embedding, plus
     the key/value cache as it stands, padding included) over the card's
     bandwidth, against the measured step times;
  3. a same-results check with end-of-sequence honoured: the engine batched
     against the engine at batch 1 on the same prompts: share of identical
     texts, median token position where texts first differ, cosine of pooled
     vectors; for both ways of running the prompt pass.

Timing runs generate exactly --new-tokens per prompt on every side: the
output-layer rows of the end-of-sequence tokens are zeroed, so their logit is
exactly 0 while the largest other logit is positive. For the check, a
random-weight model almost never picks Llama's real end tokens, so every 64th
token id counts as end of sequence there, which makes rows stop at different
steps as real texts do. Note that a random-weight model's next-token margins
are far thinner than a trained model's, so its flip rate overstates a real
model's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    EncodedPrompt,
    compare,
    fmt_bytes,
    gpi_pack_loop,
    mixed_lengths,
    rss_peak_bytes,
    run_engine_collect,
    sync,
    table,
)

from gpi_desktop.core.generation.engine import auto_batch_size
from gpi_desktop.core.model.devices import device_description
from gpi_desktop.core.model.models import LoadedModel, ModelInfo
from gpi_desktop.core.model.tinymodel import LLAMA_31_8B_CONFIG
from gpi_desktop.core.vocabulary.progress import NullState


class StatusLog(NullState):
    """Keeps the engine's status lines: an out-of-memory halving is reported there."""

    def __init__(self) -> None:
        self.statuses: list[str] = []

    def set_status(self, message: str) -> None:
        self.statuses.append(message)


LLAMA_31_8B = dict(LLAMA_31_8B_CONFIG, bos_token_id=128000, eos_token_id=[128001, 128008, 128009])
TINY = dict(
    LLAMA_31_8B,
    vocab_size=2048,
    hidden_size=256,
    intermediate_size=512,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    bos_token_id=0,
    eos_token_id=[1, 2],
)

# HBM bandwidth in bytes/s by device name (vendor figures); the first match wins.
BANDWIDTH = [
    ("H200", 4.8e12),
    ("H100 NVL", 3.9e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),
    ("GH200", 4.0e12),
    ("A100-SXM4-80GB", 2.039e12),
    ("A100 80GB PCIe", 1.935e12),
    ("A100", 1.555e12),
    ("L40S", 0.864e12),
    ("L4", 0.3e12),
    ("A10G", 0.6e12),
]


class IdTokenizer:
    """What the engine needs of a tokenizer; a text is the generated token ids, space-separated."""

    def __init__(self, specials: set[int], eos: int, pad: int) -> None:
        self.specials, self.eos_token_id, self.pad_token_id = specials, eos, pad

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return " ".join(str(int(i)) for i in ids if not (skip_special_tokens and int(i) in self.specials))


def build(shape: dict, device: str, dtype: torch.dtype) -> LoadedModel:
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig

    config = LlamaConfig(**shape)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.eval()
    eos = tuple(shape["eos_token_id"])
    model.generation_config = GenerationConfig(
        bos_token_id=shape["bos_token_id"], eos_token_id=list(eos), pad_token_id=eos[0]
    )
    info = ModelInfo(
        model_id="random Llama-3.1-8B shape",
        revision="random",
        source="folder",
        dtype=str(dtype).replace("torch.", ""),
        device=device,
        hidden_size=shape["hidden_size"],
        architecture="LlamaForCausalLM",
        eos_token_ids=eos,
    )
    return LoadedModel(model, IdTokenizer(set(eos), eos[0], eos[0]), info)


def with_eos(loaded: LoadedModel, eos: tuple[int, ...]) -> LoadedModel:
    loaded.model.generation_config.eos_token_id = list(eos)
    tok = IdTokenizer(set(eos), eos[0], eos[0])
    return dataclasses.replace(loaded, tokenizer=tok, info=dataclasses.replace(loaded.info, eos_token_ids=eos))


def make_prompts(n: int, low: int, high: int, vocab: int, specials: set[int], seed: int) -> list[EncodedPrompt]:
    rng = np.random.default_rng(seed)
    prompts = []
    for row, length in enumerate(mixed_lengths(n, low, high, seed)):
        ids = rng.integers(3, vocab, size=length)
        ids = [int(i) if int(i) not in specials else 3 for i in ids]
        prompts.append(EncodedPrompt(row, tuple(ids)))
    return prompts


def stratified(prompts: list[EncodedPrompt], k: int) -> list[EncodedPrompt]:
    """k prompts spread over the length range, so per-token speeds compare like with like."""
    ordered = sorted(prompts, key=lambda p: len(p.ids))
    picks = [ordered[round(i * (len(ordered) - 1) / max(1, k - 1))] for i in range(k)]
    return [EncodedPrompt(i, p.ids) for i, p in enumerate(picks)]


class StepClock:
    """Times each forward pass of the model (synchronising the GPU around it) and what a decoding step reads."""

    def __init__(self, model, device) -> None:
        self.device, self.steps, self._t0 = device, [], 0.0
        self.handles = [
            model.register_forward_pre_hook(self._pre, with_kwargs=True),
            model.register_forward_hook(self._post, with_kwargs=True),
        ]

    def _pre(self, module, args, kwargs) -> None:
        mask = kwargs["attention_mask"]
        real = int(mask.sum())  # tokens the cache holds for real (no padding), after this step
        sync(self.device)
        self._shape = (tuple(kwargs["input_ids"].shape), mask.shape[1], real)
        self._t0 = time.perf_counter()

    def _post(self, module, args, kwargs, output) -> None:
        sync(self.device)
        self.steps.append((self._shape, time.perf_counter() - self._t0))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def kv_bytes_per_token(model) -> int:
    c = model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return 2 * c.num_hidden_layers * c.num_key_value_heads * head_dim * torch.finfo(model.dtype).bits // 8


def weight_bytes_read_per_step(model) -> int:
    embed = model.get_input_embeddings().weight
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    return total - embed.numel() * embed.element_size()  # a step gathers B rows of the input embedding, no more


def bandwidth_for(name: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    for key, bw in BANDWIDTH:
        if key.lower() in name.lower():
            return bw
    return None


def measure(label, device, fn, prompts):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    results = fn(prompts)
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    tokens = sum(r.n_tokens for r in results)
    print(f"  {label}: {len(results)} prompts, {tokens} tokens in {seconds:.1f} s", flush=True)
    return dict(label=label, seconds=seconds, tokens=tokens, prompts=len(results), peak=peak), results


def write_figures(
    path: str,
    name: str,
    runs: list[dict],
    batch: int,
    weights: int,
    achieved: float,
    useful: float,
    bandwidth: float | None,
) -> None:
    """The measured figures as JSON, for a script that prints them in its own table."""
    figures = {
        "device": name,
        "auto_batch": batch,
        "weight_bytes_per_step": weights,
        "achieved_bytes_per_s": achieved,
        "useful_bytes_per_s": useful,
        "bandwidth_bytes_per_s": bandwidth,
        "runs": [dict(r, tokens_per_s=r["tokens"] / r["seconds"]) for r in runs],
    }
    Path(path).write_text(json.dumps(figures, indent=2), encoding="utf-8")


def same_results_check(loaded: LoadedModel, shape: dict, batched_prompts: list[EncodedPrompt], args):
    """The engine batched against batch 1 with the end of sequence honoured, for both prompt-pass modes."""
    device = loaded.model.device
    real_eos = loaded.info.eos_token_ids
    check_eos = tuple(sorted(set(real_eos) | set(range(64, shape["vocab_size"], 64))))
    checked = with_eos(loaded, check_eos)
    check_prompts = stratified(batched_prompts, args.check_prompts)
    _, one = measure(
        "check: engine, batch 1",
        device,
        lambda ps: run_engine_collect(checked, ps, args.check_new_tokens, 1),
        check_prompts,
    )
    agreements = {}
    for prefill in ("alone", "batched"):
        _, many = measure(
            f"check: engine, batch {len(check_prompts)}, prompt pass {prefill}",
            device,
            lambda ps: run_engine_collect(checked, ps, args.check_new_tokens, len(check_prompts), prefill=prefill),
            check_prompts,
        )
        ids = {r.row: ([int(t) for t in r.text.split()], [int(t) for t in m.text.split()]) for r, m in zip(one, many)}
        agreements[prefill] = compare(one, many, token_ids=ids)
    return check_prompts, agreements, [r.n_tokens for r in one]


def print_check(check_prompts: list[EncodedPrompt], agreements: dict, stops: list[int], new_tokens: int) -> None:
    print(
        f"same results, end of sequence honoured ({len(check_prompts)} prompts, up to {new_tokens} tokens, "
        f"lengths {min(stops)}-{max(stops)}), batched against batch 1:"
    )
    print(
        table(
            ["prompt pass", "identical texts", "median first differing token", "cosine min", "cosine median"],
            [
                [
                    k,
                    f"{a.identical_share:.0%} ({len(check_prompts) - a.differing}/{len(check_prompts)})",
                    "-" if a.median_first_difference is None else f"{a.median_first_difference:g}",
                    f"{a.min_cosine:.4f}",
                    f"{a.median_cosine:.6f}",
                ]
                for k, a in agreements.items()
            ],
        )
    )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a small shape (for a CPU check of the script)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument(
        "--prompts",
        type=int,
        default=0,
        help="prompts in the batched run (0: two batches, grouped by length as a real run is)",
    )
    parser.add_argument("--min-prompt", type=int, default=32)
    parser.add_argument("--max-prompt", type=int, default=1000)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--loop-prompts", type=int, default=6, help="prompts for the loop and the batch-1 engine")
    parser.add_argument("--check-prompts", type=int, default=24, help="0: no same-results check")
    parser.add_argument("--check-new-tokens", type=int, default=128)
    parser.add_argument("--batch", default="auto", help="the batched run's batch size: a number or auto")
    parser.add_argument("--bandwidth", type=float, default=None, help="HBM bandwidth in TB/s (else by device name)")
    parser.add_argument("--skip-loop", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the measured figures to FILE (for gpu_check.sh)")
    args = parser.parse_args()
    if args.tiny:
        args.max_prompt = min(args.max_prompt, 120)
        args.min_prompt = min(args.min_prompt, 8)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    shape = TINY if args.tiny else LLAMA_31_8B
    started = time.perf_counter()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:  # "mps (Apple M2 Pro GPU, 32 GB shared memory)" or "cpu"
        name = device_description(device.type)
    print(
        f"device: {name}; torch {torch.__version__}; shape: {'tiny' if args.tiny else 'Llama-3.1-8B'}, "
        f"{args.dtype}, SDPA attention",
        flush=True,
    )

    loaded = build(shape, args.device, dtype)
    model = loaded.model
    real_eos = loaded.info.eos_token_ids
    specials = set(real_eos) | {shape["bos_token_id"]}
    head = model.get_output_embeddings().weight
    with torch.no_grad():  # fixed length for the timing runs (see the module's note)
        saved_rows = head[list(real_eos)].clone()
        head[list(real_eos)] = 0
    print(
        f"  model built in {time.perf_counter() - started:.0f} s; weights {fmt_bytes(weight_bytes_read_per_step(model))}"
        f" read per step",
        flush=True,
    )

    pool_prompts = make_prompts(
        max(args.prompts, 512), args.min_prompt, args.max_prompt, shape["vocab_size"], specials, seed=1
    )
    batch = auto_batch_size(loaded, pool_prompts, args.new_tokens) if args.batch == "auto" else int(args.batch)
    n_batched = args.prompts or 2 * batch
    batched_prompts = [EncodedPrompt(i, p.ids) for i, p in enumerate(pool_prompts[:n_batched])]
    small = stratified(batched_prompts, args.loop_prompts)
    print(
        f"  automatic batch size {batch}; batched run: {n_batched} prompts of {args.min_prompt}-{args.max_prompt} "
        f"tokens; loop and batch 1: {len(small)} of them",
        flush=True,
    )

    # Warm-up: kernels, cuBLAS handles, allocator.
    warm = [EncodedPrompt(0, batched_prompts[0].ids[:64]), EncodedPrompt(1, batched_prompts[1].ids[:32])]
    gpi_pack_loop(loaded, warm[:1], 4)
    run_engine_collect(loaded, warm, 4, 2, prefill="alone")
    run_engine_collect(loaded, warm, 4, 2, prefill="batched")

    runs = []
    if not args.skip_loop:
        runs.append(
            measure(
                "gpi_pack loop: generate(output_hidden_states=True), one at a time",
                device,
                lambda ps: gpi_pack_loop(loaded, ps, args.new_tokens),
                small,
            )[0]
        )
    runs.append(
        measure("engine, batch 1", device, lambda ps: run_engine_collect(loaded, ps, args.new_tokens, 1), small)[0]
    )
    clocks = {}
    for prefill in ("alone", "batched"):
        clock, state = StepClock(model, device), StatusLog()
        try:
            m, _ = measure(
                f"engine, batch {batch} ({'auto' if args.batch == 'auto' else 'set'}), prompt pass {prefill}",
                device,
                lambda ps: run_engine_collect(loaded, ps, args.new_tokens, batch, prefill=prefill, state=state),
                batched_prompts,
            )
        finally:
            clock.remove()
        ooms = [s for s in state.statuses if "out of memory" in s]
        if ooms:
            m["label"] += f" [out of memory, halved {len(ooms)} times]"
            print(f"    {ooms[0]}", flush=True)
        clocks[prefill] = clock
        runs.append(m)
    if any(r["tokens"] != r["prompts"] * args.new_tokens for r in runs):
        raise SystemExit("unfair run: a prompt stopped before --new-tokens")

    # Bandwidth bound over the decoding steps of the batched run.
    bandwidth = bandwidth_for(name, args.bandwidth)
    weights, kv_token = weight_bytes_read_per_step(model), kv_bytes_per_token(model)
    decode = [(shape_, seconds) for shape_, seconds in clocks["alone"].steps if shape_[0][1] == 1]
    step_bytes = [weights + b * width * kv_token for ((b, _), width, _), _ in decode]
    useful_bytes = [weights + real * kv_token for (_, _, real), _ in decode]
    step_seconds = [s for _, s in decode]
    achieved = sum(step_bytes) / sum(step_seconds) if step_seconds else 0.0
    useful = sum(useful_bytes) / sum(step_seconds) if step_seconds else 0.0

    if args.json:  # before the check, so a check cut short still leaves the timings
        write_figures(args.json, name, runs, batch, weights, achieved, useful, bandwidth)
    with torch.no_grad():
        head[list(real_eos)] = saved_rows
    check = same_results_check(loaded, shape, batched_prompts, args) if args.check_prompts else None

    base = runs[0]["tokens"] / runs[0]["seconds"]
    print()
    print(
        table(
            ["run", "tokens/s", "vs first row", "peak GPU memory"],
            [
                [
                    r["label"],
                    f"{r['tokens'] / r['seconds']:.1f}",
                    f"{r['tokens'] / r['seconds'] / base:.1f}x",
                    fmt_bytes(r["peak"]),
                ]
                for r in runs
            ],
        )
    )
    print()
    if step_seconds:
        print(
            f"batched decoding (prompt pass alone): {len(step_seconds)} steps, median {statistics.median(step_seconds) * 1e3:.1f} ms, "
            f"{fmt_bytes(int(statistics.median(step_bytes)))} read per step (weights {fmt_bytes(weights)} + cache), "
            f"{achieved / 1e12:.2f} TB/s achieved"
        )
        if bandwidth:
            print(
                f"bandwidth bound: {bandwidth / 1e12:.2f} TB/s for '{name}': {achieved / bandwidth:.0%} of the bound "
                f"counting the cache as read (left padding included); {useful / bandwidth:.0%} counting only "
                f"real tokens' cache"
            )
        else:
            print(f"bandwidth bound: unknown for '{name}' (give --bandwidth TB/s)")
    prefill_times = {k: sum(s for sh, s in c.steps if sh[0][1] != 1) for k, c in clocks.items()}
    print(
        f"decoding time in the batched run: alone {sum(step_seconds):.1f} s, batched "
        f"{sum(s for sh, s in clocks['batched'].steps if sh[0][1] == 1):.1f} s"
    )
    print(
        f"prompt pass time in the batched run: alone {prefill_times['alone']:.1f} s, "
        f"batched {prefill_times['batched']:.1f} s"
    )
    print()
    if check:
        print_check(*check, args.check_new_tokens)
    rss = f"; host RSS peak {fmt_bytes(rss_peak_bytes())}" if device.type != "cuda" else ""
    print(f"total {time.perf_counter() - started:.0f} s{rss}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""CPU benchmark: the engine against gpi_pack's one-prompt-at-a-time generate() loop.

    python benchmarks/cpu_benchmark.py                 # defaults: the table in benchmarks/README.md
    python benchmarks/cpu_benchmark.py --quick         # a smaller run to check that it works
    python benchmarks/cpu_benchmark.py --workload prefill   # 24 prompts x 24 new tokens, 4096 wide, 2 layers
    python benchmarks/cpu_benchmark.py --workload longtail  # 40 prompts x up to 160 tokens, EOS honoured
    python benchmarks/cpu_benchmark.py --workload longtail --prompts 200

A random-weight Llama-architecture model wide enough that matrix work
dominates (hidden size 1024, 4 layers by default) is built offline with
gpi_desktop.core.model.tinymodel. Each measurement runs in its own process, so that
its peak memory (the resident-set high-water mark) is its own; both sides
start from the same token ids, both get one warm-up prompt.

Fair fixed length: the output-layer rows of the end-of-sequence tokens are
zeroed, so their logit is exactly 0 while the largest of the other logits is
positive: no prompt ever stops early, on either side, and both do exactly the
same work (checked: every result has --new-tokens tokens). Nothing else about
generation is changed. With --honour-eos (the longtail workload) the
end-of-sequence rows are instead scaled by --eos-boost, so texts end after
very different numbers of tokens, as real ones do; then the loop runs every
prompt (its work is no longer a fixed share) and the check is that both sides
generated the same lengths.

Workloads (issue 16): "prefill" is prefill-bound (short outputs: most of the
time is each prompt's pass, where the shared instruction prefix pays off);
"longtail" is decode-bound with a long tail of lengths (where keeping the
batch full pays off). The whole process is timed from the child's start to its
results saved (imports, loading, one warm-up prompt, the run); where the loop
runs only some of the prompts (--loop-prompts), its run time is scaled to all
of them and the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    compare,
    fmt_bytes,
    gpi_pack_loop,
    mixed_lengths,
    rss_peak_bytes,
    run_engine_collect,
    table,
)

WORDS = [
    "the",
    "committee",
    "met",
    "on",
    "tuesday",
    "to",
    "discuss",
    "the",
    "new",
    "budget",
    "for",
    "schools",
    "and",
    "hospitals",
    "voters",
    "in",
    "rural",
    "districts",
    "care",
    "about",
    "jobs",
    "roads",
    "and",
    "the",
    "price",
    "of",
    "fuel",
    "a",
    "candidate",
    "who",
    "promises",
    "lower",
    "taxes",
    "and",
    "better",
    "services",
    "must",
    "explain",
    "how",
    "to",
    "pay",
    "for",
    "them",
]


def prompt_texts(n: int, seed: int) -> list[str]:
    """n prompts from 1 to 60 words (mixed lengths, shuffled): 70-230 tokens with the chat template."""
    return [
        " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(length))
        for i, length in enumerate(mixed_lengths(n, 1, 60, seed))
    ]


def stratified(prompts, k: int):
    """k of the prompts spread evenly over their lengths (same rows): the loop's rate on a like-for-like sample."""
    if k <= 0 or k >= len(prompts):
        return prompts
    ordered = sorted(prompts, key=lambda p: (len(p.ids), p.row))
    return sorted({ordered[round(i * (len(ordered) - 1) / (k - 1))] for i in range(k)}, key=lambda p: p.row)


WORKLOADS = {
    "default": {},
    "prefill": {
        "hidden": 4096,
        "intermediate": 11008,
        "layers": 2,
        "heads": 32,
        "kv_heads": 8,
        "prompts": 24,
        "new_tokens": 24,
        "loop_prompts": 0,
    },
    # eos_boost 1.7 (tried on 40 prompts: 1.5 -> 34 of 40 at the limit, 1.8 -> median 1 token): lengths 1-160,
    # median 5, mean 75, 18 of 40 at the limit; a random model's texts end at once or run on, a long tail either way.
    "longtail": {"prompts": 40, "new_tokens": 160, "loop_prompts": 0, "honour_eos": True, "eos_boost": 1.7},
}


def build(folder: Path, args) -> Path:
    from gpi_desktop.core.model.tinymodel import TinySpec, build_tiny_model

    spec = TinySpec(
        architecture="llama",
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_layers=args.layers,
        num_heads=args.heads,
        num_kv_heads=args.kv_heads,
        seed=3,
        eos_boost=args.eos_boost if args.honour_eos else 0.0,
    )
    return build_tiny_model(folder, spec)


def load(folder: Path, threads: int | None, honour_eos: bool = False):
    import torch

    from gpi_desktop.core.generation.engine import EncodedPrompt
    from gpi_desktop.core.generation.instructions import make_renderer
    from gpi_desktop.core.model.models import load_model
    from gpi_desktop.core.vocabulary.settings import RunSettings

    if threads:
        torch.set_num_threads(threads)
    loaded = load_model(RunSettings(model=str(folder), device="cpu"))
    head = loaded.model.get_output_embeddings().weight
    if head.data_ptr() == loaded.model.get_input_embeddings().weight.data_ptr():
        raise SystemExit("the benchmark model must not tie its input and output embeddings")
    with torch.no_grad():
        for i in loaded.info.eos_token_ids if not honour_eos else ():
            head[i].zero_()
    return loaded, make_renderer(loaded.tokenizer, "create", "gpi_pack"), EncodedPrompt


def child(args) -> None:
    """One measurement in a fresh process; prints one JSON line and saves its results."""
    import torch

    loaded, renderer, EncodedPrompt = load(Path(args.model_dir), args.threads, args.honour_eos)
    prompts = [EncodedPrompt(i, tuple(renderer.encode(t))) for i, t in enumerate(prompt_texts(args.prompts, args.seed))]
    warm = [EncodedPrompt(-1, prompts[0].ids)]
    rss_loaded = rss_peak_bytes()
    if args.only == "loop":
        prompts = stratified(prompts, args.loop_prompts)
        run = lambda ps: gpi_pack_loop(loaded, ps, args.new_tokens)  # noqa: E731
        batch = 1
    else:
        from gpi_desktop.core.generation.cache import new_cache
        from gpi_desktop.core.generation.engine import EngineConfig, auto_batch_size, resolve_prefill

        batch = auto_batch_size(loaded, prompts, args.new_tokens) if args.batch == "auto" else int(args.batch)
        resolved = resolve_prefill(EngineConfig("mean", 1, 1, prefill=args.prefill), new_cache(loaded.model)[1])
        args.prefill_label = resolved + (" (auto)" if args.prefill == "auto" else "")
        # An empty shared prefix turns the sharing off (to measure what it brings).
        extra = {"shared_prefix": ()} if args.no_shared_prefix else {}
        args.prefill_label += ", no shared prefix" if args.no_shared_prefix else ""
        run = lambda ps: run_engine_collect(loaded, ps, args.new_tokens, batch, prefill=args.prefill, **extra)  # noqa: E731
    run(warm)
    passes = PassClock(loaded.model)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    results = run(prompts)
    seconds = time.perf_counter() - start
    passes.remove()
    layer_params = sum(p.numel() for p in loaded.model.base_model.layers.parameters())
    lengths = {r.n_tokens for r in results}
    if not args.honour_eos and lengths != {args.new_tokens}:
        raise SystemExit(f"unfair run: generated lengths {sorted(lengths)} instead of {args.new_tokens}")
    np.savez(
        args.results,
        rows=[r.row for r in results],
        vectors=np.stack([r.vector for r in results]),
        texts=np.array([r.text for r in results], dtype=object),
        n_tokens=[r.n_tokens for r in results],
        allow_pickle=True,
    )
    finished_at = time.time()  # the whole process ends here: the FLOP/s figures below are not the job's
    print(
        json.dumps(
            {
                "finished_at": finished_at,
                "label": args.only,
                "batch": batch,
                "prefill": getattr(args, "prefill_label", "-"),
                "seconds": seconds,
                "prompts": len(results),
                "tokens": sum(r.n_tokens for r in results),
                "rss_loaded": rss_loaded,
                "rss_peak": rss_peak_bytes(),
                "threads": torch.get_num_threads(),
                "load": [load_before, os.getloadavg()[0]],
                "prompt_tokens": [min(len(p.ids) for p in prompts), max(len(p.ids) for p in prompts)],
                "new_tokens": sorted(r.n_tokens for r in results),
                # 2 FLOPs per weight per token in the decoder layers (attention scores and the output layer left out);
                # prompt passes (more than one token per row) and decoding steps apart
                "flops": 2 * layer_params * (passes.tokens["prompt"] + passes.tokens["step"]),
                "prompt_flops": 2 * layer_params * passes.tokens["prompt"],
                "prompt_seconds": passes.seconds["prompt"],
                "step_flops": 2 * layer_params * passes.tokens["step"],
                "step_seconds": passes.seconds["step"],
                "steps": passes.calls["step"],
                "step_rows": passes.tokens["step"],
                "matmul_peak": matmul_peak(loaded.model.dtype),
            }
        )
    )


class PassClock:
    """Time and tokens of the model's forward passes, prompt passes and decoding steps apart."""

    def __init__(self, model) -> None:
        self.tokens = {"prompt": 0, "step": 0}
        self.seconds = {"prompt": 0.0, "step": 0.0}
        self.calls = {"prompt": 0, "step": 0}
        self._kind, self._start = "step", 0.0
        self.handles = [
            model.register_forward_pre_hook(self._before, with_kwargs=True),
            model.register_forward_hook(self._after),
        ]

    def _before(self, module, args, kwargs) -> None:
        ids = kwargs["input_ids"]
        self._kind = "step" if ids.shape[1] == 1 else "prompt"
        self.tokens[self._kind] += ids.numel()
        self.calls[self._kind] += 1
        self._start = time.perf_counter()

    def _after(self, module, args, output) -> None:
        self.seconds[self._kind] += time.perf_counter() - self._start

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def matmul_peak(dtype) -> float:
    """FLOP/s of a large torch matmul of the model's dtype on this machine with this process's threads (best of 5)."""
    import torch

    a, b = torch.randn(1024, 4096, dtype=dtype), torch.randn(4096, 1024, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 1024 * 4096 * 1024 / best


def measure(args, only: str, batch: str, folder: Path, results: Path) -> dict:
    batch, _, prefill = batch.partition(":")
    prefill, _, sharing = prefill.partition(":")
    cmd = (
        [
            sys.executable,
            __file__,
            "--child",
            only,
            "--model-dir",
            str(folder),
            "--results",
            str(results),
            "--prompts",
            str(args.prompts),
            "--new-tokens",
            str(args.new_tokens),
            "--batch",
            batch,
            "--seed",
            str(args.seed),
            "--prefill",
            prefill or args.prefill,
            "--loop-prompts",
            str(args.loop_prompts),
            "--eos-boost",
            str(args.eos_boost),
        ]
        + (["--no-shared-prefix"] if sharing == "noprefix" else [])
        + (["--honour-eos"] if args.honour_eos else [])
    )
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    start = time.time()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    m = json.loads(out.stdout.strip().splitlines()[-1])
    # The whole process: interpreter start, imports, loading, one warm-up prompt, the run, saving its results.
    m["process_seconds"] = m["finished_at"] - start
    return m


def read_results(path: Path):
    from gpi_desktop.core.vocabulary.results import PromptResult

    data = np.load(path, allow_pickle=True)
    return [
        PromptResult(
            row=int(r),
            text=str(t),
            vector=v,
            n_tokens=0,
            stop_reason="length",
            pooled_from_step0=False,
            prompt_tokens=0,
        )
        for r, t, v in zip(data["rows"], data["texts"], data["vectors"])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workload",
        choices=sorted(WORKLOADS),
        default="default",
        help="a preset of the options below (issue 16's two workloads); explicit options still win",
    )
    parser.add_argument("--honour-eos", action="store_true", help="let texts end at the end-of-sequence token")
    parser.add_argument(
        "--eos-boost",
        type=float,
        default=1.5,
        help="with --honour-eos: scale of the end-of-sequence rows (how soon texts end)",
    )
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--intermediate", type=int, default=2816)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=32, help="prompts the engine runs")
    parser.add_argument(
        "--loop-prompts",
        type=int,
        default=12,
        help="of those, how many the (slow) loop runs, spread over the lengths (0: all)",
    )
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument(
        "--repeat", type=int, default=3, help="measure each side this many times, interleaved; the table shows the best"
    )
    parser.add_argument("--batch", default="auto", help="the engine's batch size: a number or auto")
    parser.add_argument(
        "--sweep",
        default="",
        help="also time the engine at these batch sizes, optionally with a prompt-pass mode and "
        "'noprefix' (no shared prefix): 1,16,auto:alone,auto:alone:noprefix",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-shared-prefix", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--prefill",
        default="auto",
        choices=["auto", "alone", "batched"],
        help="the engine's prompt pass: each prompt alone, or one padded pass per batch",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a small run (hidden 256, 16 prompts, 8 tokens, once)")
    parser.add_argument("--child", choices=["loop", "engine"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--results", help=argparse.SUPPRESS)
    args = parser.parse_args()
    explicit = {a.dest for a in parser._actions if any(o in sys.argv for o in a.option_strings)}
    for name, value in WORKLOADS[args.workload].items():
        if name not in explicit:
            setattr(args, name, value)
    if args.child:
        args.only = args.child
        return child(args)
    if args.quick:
        args.hidden, args.intermediate, args.layers, args.prompts, args.new_tokens, args.repeat = 256, 512, 2, 16, 8, 1
        args.loop_prompts = 6

    configs = [("loop", "1"), ("engine", args.batch)] + [
        ("engine", b.strip()) for b in args.sweep.split(",") if b.strip()
    ]
    runs: dict[int, list[dict]] = {i: [] for i in range(len(configs))}
    with tempfile.TemporaryDirectory(prefix="gpi-bench-") as tmp:
        tmp = Path(tmp)
        folder = build(tmp / "model", args)
        print(
            f"model: llama, hidden {args.hidden}, intermediate {args.intermediate}, {args.layers} layers, "
            f"{args.heads} heads ({args.kv_heads} kv), float32; engine {args.prompts} prompts, loop "
            f"{args.loop_prompts or args.prompts} of them; {args.new_tokens} new tokens each; {os.cpu_count()} CPUs, "
            f"load average before {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        for rep in range(args.repeat):  # interleaved, so a busy spell of the machine hits both sides alike
            for i, (only, batch) in enumerate(configs):
                m = measure(args, only, batch, folder, tmp / f"{i}.npz")
                runs[i].append(m)
                print(
                    f"  round {rep + 1}: {only} (batch {m['batch']}, prompt pass {m['prefill']}): run {m['seconds']:.1f} s, "
                    f"whole process {m['process_seconds']:.1f} s, load {m['load'][0]:.1f}; {rates(m)}",
                    flush=True,
                )
        engine_results = read_results(tmp / "1.npz")
        loop_results = read_results(tmp / "0.npz")
        loop_rows = {r.row for r in loop_results}
        data = np.load(tmp / "1.npz", allow_pickle=True)
        engine_rows = (data["rows"].tolist(), data["n_tokens"].tolist())
        agreement = compare(loop_results, [r for r in engine_results if r.row in {x.row for x in loop_results}])

    best = {i: min(ms, key=lambda m: m["seconds"] / m["prompts"]) for i, ms in runs.items()}
    engine_prompts = best[1]["prompts"]
    rows = []
    for i, (only, batch) in enumerate(configs):
        m = best[i]
        if only == "loop":
            label = "gpi_pack loop (generate, one at a time)"
        else:
            label = f"engine, batch {m['batch']}" + (" (auto)" if batch.startswith("auto") else "")
            label += f", prompt pass {m['prefill']}"
        rows.append(
            [
                label,
                f"{m['seconds']:.1f} s",
                f"{whole(m, engine_prompts):.1f} s",
                f"{whole(best[0], engine_prompts) / whole(m, engine_prompts):.2f}x",
                f"{(m['prompts'] / m['seconds']) / (best[0]['prompts'] / best[0]['seconds']):.2f}x",
                fmt_bytes(max(x["rss_peak"] - x["rss_loaded"] for x in runs[i])),
                f"{gflops(m['prompt_flops'], m['prompt_seconds'])} / {gflops(m['step_flops'], m['step_seconds'])}",
                f"{m['matmul_peak'] / 1e9:.1f}",
                f"{m['load'][0]:.1f}/{m['load'][1]:.1f}",
            ]
        )
    print()
    subset = best[0]["prompts"] < engine_prompts
    print(
        table(
            [
                f"run (best of {args.repeat} rounds)",
                "run",
                "whole process" + (" (loop: scaled)" if subset else ""),
                "vs loop, whole process",
                "vs loop, run",
                "peak RSS above the loaded model",
                "GFLOP/s prompt pass / decoding step",
                "matmul peak GFLOP/s",
                "load start/end",
            ],
            rows,
        )
    )
    print()
    if subset:
        print(
            f"The loop ran {best[0]['prompts']} of the {engine_prompts} prompts (spread over the lengths); its whole "
            f"process is scaled: start-up and loading as measured, plus its run time x {engine_prompts}/"
            f"{best[0]['prompts']}."
        )
    print(
        "engine/loop ratio per round, whole process: "
        + ", ".join(f"{whole(lp, engine_prompts) / whole(e, engine_prompts):.2f}x" for e, lp in zip(runs[1], runs[0]))
    )
    e = best[1]
    print(
        f"torch threads: {e['threads']}; prompt lengths {e['prompt_tokens'][0]}-{e['prompt_tokens'][1]} tokens; "
        f"engine decoding steps {e['steps']} ({e['step_rows'] / max(1, e['steps']):.1f} rows per step on average)"
    )
    if args.honour_eos:
        print(
            f"generated lengths (engine): {e['new_tokens'][0]}-{e['new_tokens'][-1]}, median "
            f"{statistics.median(e['new_tokens'])}; loop lengths equal (its rows): "
            f"{sorted(best[0]['new_tokens']) == sorted(n for r, n in zip(*engine_rows) if r in loop_rows)}"
        )
    ok = agreement.identical_share == 1.0 and agreement.max_abs_difference <= 1e-4
    print(
        f"same results (engine vs loop, {len(loop_results)} prompts): {agreement.identical_share:.0%} identical "
        f"texts, vector cosine min {agreement.min_cosine:.6f}, max |difference| {agreement.max_abs_difference:.2e}"
        f" ({'within' if ok else 'NOT within'} the 1e-4 of issue 16)"
    )


def gflops(flops: float, seconds: float) -> str:
    return f"{flops / seconds / 1e9:.1f}" if seconds else "-"


def rates(m: dict) -> str:
    return (
        f"GFLOP/s in the layers: prompt passes {gflops(m['prompt_flops'], m['prompt_seconds'])} "
        f"({m['prompt_seconds']:.1f} s), decoding steps {gflops(m['step_flops'], m['step_seconds'])} "
        f"({m['step_seconds']:.1f} s, {m['steps']} steps); matmul peak {m['matmul_peak'] / 1e9:.1f} GFLOP/s"
    )


def whole(m: dict, prompts: int) -> float:
    """The whole process's seconds, the run part scaled to `prompts` where only some were run (the loop)."""
    return m["process_seconds"] - m["seconds"] + m["seconds"] * prompts / m["prompts"]


if __name__ == "__main__":
    main()

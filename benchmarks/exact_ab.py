"""Row-exact kernels against the engine's earlier ones, same process, interleaved (issue 29).

    python benchmarks/exact_ab.py [--hidden 1024 --intermediate 2816 --layers 4 --heads 16 --kv-heads 8]
                                  [--prompts 32 --new-tokens 64 --rounds 3 --threads 1]

Builds the benchmark's random-weight Llama (cpu_benchmark.build, EOS rows
zeroed so every row makes exactly --new-tokens), then runs the engine on the
same prompts at the automatic batch size, alternating: "exact" (the default:
row-exact kernels, the template's prefix, as a job runs) and "before" (the
kernels and the prompts' own common prefix of the engine before issue 29:
EngineConfig(row_exact=False)). Prints each round's seconds and the ratio
of the best rounds, and checks that the exact run's rows are bit-identical
to batch 1's on the first 4 prompts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import run_engine_collect
from cpu_benchmark import build, load, prompt_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in (
        ("hidden", 1024),
        ("intermediate", 2816),
        ("layers", 4),
        ("heads", 16),
        ("kv-heads", 8),
        ("prompts", 32),
        ("new-tokens", 64),
        ("rounds", 3),
        ("threads", 1),
        ("seed", 0),
    ):
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    args.honour_eos, args.eos_boost = False, 0.0
    from gpi_desktop.core.generation.engine import auto_batch_size
    from gpi_desktop.core.generation.prefix import template_prefix

    with tempfile.TemporaryDirectory(prefix="gpi-exact-ab-") as tmp:
        loaded, renderer, EncodedPrompt = load(build(Path(tmp) / "model", args), args.threads)
        prompts = [
            EncodedPrompt(i, tuple(renderer.encode(t))) for i, t in enumerate(prompt_texts(args.prompts, args.seed))
        ]
        batch = auto_batch_size(loaded, prompts, args.new_tokens)
        sides = {"exact": {"shared_prefix": template_prefix(renderer.encode)}, "before": {"row_exact": False}}
        run_engine_collect(loaded, prompts[:2], 2, 2)  # warm-up
        times: dict[str, list[float]] = {side: [] for side in sides}
        results = {}
        print(
            f"hidden {args.hidden}, {args.layers} layers, {args.prompts} prompts x {args.new_tokens} tokens, "
            f"batch {batch}, threads {args.threads}, load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        for r in range(args.rounds):
            for side, extra in sides.items():
                start = time.perf_counter()
                results[side] = run_engine_collect(loaded, prompts, args.new_tokens, batch, **extra)
                times[side].append(time.perf_counter() - start)
                print(f"  round {r + 1}: {side} {times[side][-1]:.1f} s, load {os.getloadavg()[0]:.1f}", flush=True)
        alone = run_engine_collect(loaded, prompts[:4], args.new_tokens, 1, **sides["exact"])
        same = sum(np.array_equal(a.vector, b.vector) and a.text == b.text for a, b in zip(alone, results["exact"][:4]))
        texts = sum(a.text == b.text for a, b in zip(results["exact"], results["before"]))
        diff = max(float(np.abs(a.vector - b.vector).max()) for a, b in zip(results["exact"], results["before"]))
        print(
            f"exact / before (best rounds): {min(times['exact']) / min(times['before']):.2f}x; round by round: "
            + ", ".join(f"{e / b:.2f}x" for e, b in zip(times["exact"], times["before"]))
        )
        print(
            f"exact rows bit-identical to batch 1: {same}/4; texts equal to before: {texts}/{len(prompts)}, "
            f"max |difference| {diff:.2e}"
        )


if __name__ == "__main__":
    main()

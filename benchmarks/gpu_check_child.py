"""What the GPU check (gpu_check.py) runs in processes of its own.

    python benchmarks/gpu_check_child.py build FOLDER [--dry-run]
    python benchmarks/gpu_check_child.py cli [--gpu-headroom-gib G | --oom-rows N] -- run ...

`build` writes the model folder (in its own process, so that the GPU memory
the build used is free again for the runs); `cli` is gpi-desktop's own main
under part d's memory limit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(args) -> int:
    """The model folder: Llama-3.1-8B's shape in bfloat16 on the GPU, or a tiny one on the CPU (dry run)."""
    from gpi_desktop.core.model.tinymodel import build_tiny_model, llama_31_8b_spec

    if args.dry_run:
        spec = llama_31_8b_spec(
            hidden_size=64,
            intermediate_size=128,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            model_vocab_size=1024,
            seed=1,
            eos_boost=2.0,
        )
    else:
        spec = llama_31_8b_spec(device="cuda", dtype="bfloat16", seed=1, eos_boost=2.0)
    started = time.perf_counter()
    folder = build_tiny_model(args.folder, spec)
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(f"model built and saved in {time.perf_counter() - started:.0f} s: {size / 2**30:.2f} GiB in {folder}")
    return 0


def cli(args) -> int:
    """gpi-desktop's main, under part d's memory limit."""
    import torch

    if args.gpu_headroom_gib is not None:
        # The caching allocator refuses past this share of the card; the automatic batch, which reads the card's
        # free memory, does not know it, so the first batch runs out of memory as a fuller card would make it.
        model = Path(args.argv[args.argv.index("--model") + 1])
        weights = sum(p.stat().st_size for p in model.glob("*.safetensors"))
        total = torch.cuda.get_device_properties(0).total_memory
        fraction = min(1.0, (weights + args.gpu_headroom_gib * 2**30) / total)
        torch.cuda.set_per_process_memory_fraction(fraction)
        print(f"GPU memory limited to {fraction:.1%} of {total / 2**30:.1f} GiB", flush=True)
    if args.oom_rows is not None:
        simulate_out_of_memory(args.oom_rows)
    from gpi_desktop.cli import main

    return main(args.argv)


def simulate_out_of_memory(rows: int) -> None:
    """Make the decoder fail as out of memory for a batch of more than `rows` rows (the CPU has no small allocator)."""
    import functools

    import torch
    from transformers.models.llama import modeling_llama

    forward = modeling_llama.LlamaModel.forward

    @functools.wraps(forward)
    def limited(self, input_ids=None, *a, **kw):
        if input_ids is not None and input_ids.shape[0] > rows:
            raise torch.OutOfMemoryError(f"simulated out of memory: {input_ids.shape[0]} rows, the limit is {rows}")
        return forward(self, input_ids, *a, **kw)

    modeling_llama.LlamaModel.forward = limited


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the model folder")
    b.add_argument("folder", type=Path)
    b.add_argument("--dry-run", action="store_true")
    b.set_defaults(handler=build)
    c = sub.add_parser("cli", help="gpi-desktop's main under a memory limit: cli [limits] -- run ...")
    c.add_argument("--gpu-headroom-gib", type=float)
    c.add_argument("--oom-rows", type=int)
    c.add_argument("argv", nargs=argparse.REMAINDER)
    c.set_defaults(handler=cli)
    args = parser.parse_args(argv)
    if getattr(args, "argv", None) and args.argv[0] == "--":
        args.argv = args.argv[1:]
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())

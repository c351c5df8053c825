"""The GPU check (issue 28): `gpi-desktop run` on its target hardware, in five parts, one table at the end.

    bash benchmarks/gpu_check.sh              # one H100/H200: installs what it needs, then runs this
    bash benchmarks/gpu_check.sh --dry-run    # every part on the CPU with a tiny model (8-bit/4-bit skipped)

a. `gpi-desktop run` end to end at the default device and precision on a random-weight model of
   Llama-3.1-8B's exact shape (built on the GPU, saved as safetensors, loaded by from_pretrained as a
   user's model is), 64 prompts of mixed lengths, 128 new tokens, end of text honoured; the export
   checked with the checks the self-test uses (core/output/verify.py);
b. benchmarks/gpu_benchmark.py: the gpi_pack loop, the engine at batch 1 and at the automatic batch,
   tokens/s, peak memory, share of the HBM bound;
c. what batching does to bf16 results: the same prompts at batch 1, at the automatic batch and with
   --one-at-a-time, the share of identical texts and the largest vector difference between each pair;
d. a forced out-of-memory (GPU: a small per-process memory fraction; dry run: a simulated allocator
   limit) halves the batch, and the run finishes with every prompt exported;
e. 8-bit and 4-bit loads generate a few prompts (skipped in the dry run: bitsandbytes needs an NVIDIA GPU).

Exit status 0 when every check of every part that ran passed, 1 otherwise. The targets (automatic
batch >= 20x the loop, >= 50% of the HBM bound, batch 1 no slower than the loop, all in 8 minutes)
are reported, not enforced: missing one is a finding, not a broken check.

benchmarks/gpu_check_child.py builds the model folder and runs gpi-desktop under part d's memory limit,
each in a process of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "benchmarks" / "gpu_check_child.py"  # the model's build and the runs under a memory limit
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# Parts' targets (issue 6 and 28).
TARGET_SECONDS = 8 * 60
TARGET_VS_LOOP = 20.0
TARGET_BOUND_SHARE = 0.5
OOM_STATUS = "ran out of memory with"
SENTENCE = (
    "The committee met on Tuesday to discuss the new budget for schools and hospitals while voters in rural districts "
    "care about jobs roads and the price of fuel and a candidate who promises lower taxes must explain how to pay for "
    "better services as immigration climate policy and health care dominate the campaign"
)
WORDS = SENTENCE.split()


@dataclass
class Part:
    key: str
    what: str
    ok: bool | None = None  # None: skipped
    figures: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def check(self, condition: bool, what: str) -> bool:
        if not condition:
            self.problems.append(what)
        return condition

    @property
    def result(self) -> str:
        if self.ok is None:
            return "skipped"
        return "pass" if self.ok and not self.problems else "FAIL"


@dataclass(frozen=True)
class Plan:
    """What the check runs, sized for the GPU or for the CPU's dry run."""

    dry_run: bool
    work: Path
    model: Path
    prompts: int
    new_tokens: int
    check_new_tokens: int
    oom_new_tokens: int
    words: tuple[int, int]  # prompt lengths in words, spread from the first to the second
    benchmark_args: tuple[str, ...]
    gpu_headroom_gib: float
    oom_rows: int
    quant_prompts: int
    quant_new_tokens: int
    run_timeout: float  # seconds any one process may take

    @property
    def prompts_csv(self) -> Path:
        return self.work / "prompts.csv"

    @property
    def few_csv(self) -> Path:
        return self.work / "few_prompts.csv"


# --- the runs ----------------------------------------------------------------------------------------


def child_env(plan: Plan) -> dict[str, str]:
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        GPI_DESKTOP_LOG_DIR=str(plan.work / "logs"),
    )
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


@dataclass(frozen=True)
class Ran:
    code: int
    output: str
    seconds: float


def run_logged(plan: Plan, name: str, command: list[str], echo: bool = True) -> Ran:
    """Run a command, its output to work/<name>.log and (echo, or its end when it fails) to the terminal."""
    print(f"  $ {' '.join(command[1:])}", flush=True)
    started, lines = time.perf_counter(), []
    with subprocess.Popen(
        command,
        cwd=ROOT,
        env=child_env(plan),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as proc:
        # A run that hangs on the GPU machine would take the whole lease with it: it is stopped, and its part fails.
        stop = threading.Timer(plan.run_timeout, proc.kill)
        stop.start()
        try:
            for line in proc.stdout:
                lines.append(line)
                if echo:
                    print(f"    {line}", end="", flush=True)
        finally:
            stop.cancel()
    if proc.returncode and time.perf_counter() - started >= plan.run_timeout:
        lines.append(f"(stopped after {plan.run_timeout:.0f} s, --run-timeout)\n")
    if proc.returncode and not echo:
        print("".join(f"    {line}" for line in lines[-30:]), end="", flush=True)
    output = "".join(lines)
    (plan.work / f"{name}.log").write_text(output, encoding="utf-8")
    return Ran(proc.returncode, output, time.perf_counter() - started)


def gpi_run(
    plan: Plan,
    name: str,
    *flags: str,
    prompts: Path | None = None,
    new_tokens: int | None = None,
    limit: tuple[str, ...] = (),
) -> tuple[Ran, Path]:
    """`gpi-desktop run` into work/<name> (through this script's `cli` command where a memory limit applies).

    Its output goes to work/<name>.log; the terminal gets its end only if it fails, and its status lines (out of
    memory among them) only under a limit.
    """
    out = plan.work / name
    entry = [sys.executable, str(CHILD), "cli", *limit, "--"] if limit else [sys.executable, "-m", "gpi_desktop"]
    command = [
        *entry,
        "run",
        "--model",
        str(plan.model),
        "--prompts",
        str(prompts or plan.prompts_csv),
        "--out",
        str(out),
        "--max-new-tokens",
        str(new_tokens or plan.new_tokens),
        "--overwrite",
        *flags,
    ]
    return run_logged(plan, name, command, echo=bool(limit)), out


def export_ok(part: Part, ran: Ran, out: Path, prompts: list[str], new_tokens: int, label: str) -> bool:
    """The run ended well and its export passes every check; each failure is noted on the part."""
    from gpi_desktop.core.output.verify import export_checks

    if not part.check(ran.code == 0, f"{label}: gpi-desktop run exited {ran.code}"):
        return False
    failed = [c for c in export_checks(out, prompts, max_new_tokens=new_tokens) if not c.ok]
    for c in failed:
        part.problems.append(f"{label}: export check failed: {c.what} ({c.detail})")
    return not failed


def read_prompts(path: Path) -> list[str]:
    import pandas as pd

    return pd.read_csv(path)["text"].tolist()


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def stop_counts(out: Path) -> str:
    counts = manifest(out)["counts"]
    return f"{counts['prompts'] - counts['hit_token_limit']} stopped at end of text, {counts['hit_token_limit']} at the limit"


# --- the parts ---------------------------------------------------------------------------------------


def part_a(plan: Plan, part: Part) -> None:
    ran, out = gpi_run(plan, "a_run")
    if not export_ok(part, ran, out, read_prompts(plan.prompts_csv), plan.new_tokens, "run"):
        return
    m = manifest(out)
    device, precision = m["model"]["device"], m["model"]["precision"]
    if not plan.dry_run:
        part.check(device.startswith("cuda"), f"ran on {device}, not the GPU")
        part.check(precision == "bfloat16", f"ran in {precision}, not bfloat16")
    part.figures += [
        f"{plan.prompts} prompts x {plan.new_tokens} tokens on {device}, {precision}",
        stop_counts(out),
        f"run {ran.seconds:.0f} s (start, load, run, export)",
    ]


def part_b(plan: Plan, part: Part) -> None:
    figures_file = plan.work / "b_figures.json"
    ran = run_logged(
        plan,
        "b_benchmark",
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_benchmark.py"),
            *plan.benchmark_args,
            "--json",
            str(figures_file),
        ],
    )
    if not part.check(ran.code == 0 and figures_file.is_file(), f"gpu_benchmark.py exited {ran.code}"):
        return
    f = json.loads(figures_file.read_text(encoding="utf-8"))
    loop = next(r for r in f["runs"] if r["label"].startswith("gpi_pack loop"))
    one = next(r for r in f["runs"] if r["label"] == "engine, batch 1")
    auto = next(r for r in f["runs"] if "prompt pass alone" in r["label"])
    peak = max((r["peak"] or 0) for r in f["runs"])
    share = f["achieved_bytes_per_s"] / f["bandwidth_bytes_per_s"] if f["bandwidth_bytes_per_s"] else None
    part.figures += [
        (
            f"loop {loop['tokens_per_s']:.1f}, batch 1 {one['tokens_per_s']:.1f}, auto batch "
            f"{f['auto_batch']} {auto['tokens_per_s']:.1f} tokens/s"
        ),
        (
            f"auto/loop {auto['tokens_per_s'] / loop['tokens_per_s']:.1f}x, batch 1/loop "
            f"{one['tokens_per_s'] / loop['tokens_per_s']:.2f}x"
        ),
        f"peak GPU memory {peak / 2**30:.1f} GiB" if peak else "peak GPU memory: - (CPU)",
        f"{share:.0%} of the HBM bound" if share is not None else "HBM bound: - (no bandwidth known)",
    ]
    if plan.dry_run:
        part.targets.append("targets not applicable on the CPU")
        return
    part.targets += [
        target(auto["tokens_per_s"] >= TARGET_VS_LOOP * loop["tokens_per_s"], "auto >= 20x loop"),
        target(share is not None and share >= TARGET_BOUND_SHARE, ">= 50% of the HBM bound"),
        target(one["tokens_per_s"] >= loop["tokens_per_s"], "batch 1 >= loop"),
    ]


def target(met: bool, what: str) -> str:
    return f"{what}: {'met' if met else 'MISSED'}"


def part_c(plan: Plan, part: Part) -> None:
    prompts = read_prompts(plan.prompts_csv)
    modes = {
        "batch 1": ("--batch-size", "1"),
        "auto batch": ("--batch-size", "auto"),
        "one at a time": ("--one-at-a-time",),
    }
    outs = {}
    for label, flags in modes.items():
        ran, out = gpi_run(
            plan, "c_" + label.replace(" ", "_"), "--dtype", "bfloat16", *flags, new_tokens=plan.check_new_tokens
        )
        if export_ok(part, ran, out, prompts, plan.check_new_tokens, label):
            outs[label] = out
            part.figures.append(f"{label} {ran.seconds:.0f} s")
    if len(outs) < len(modes):
        return
    from gpi_desktop.core.output.compare import compare_exports

    for a, b in (("batch 1", "auto batch"), ("batch 1", "one at a time"), ("auto batch", "one at a time")):
        c = compare_exports(outs[a], outs[b])
        if not part.check(c.identical_texts is not None and c.vectors is not None, f"{a} / {b}: not comparable"):
            continue
        part.figures.append(
            f"{a} / {b}: {c.identical_texts / c.rows[0]:.0%} texts equal, largest vector difference "
            f"{c.vectors.max_abs_difference:.3g}, min cosine {c.vectors.min_cosine:.4f}"
        )
    part.figures.append(
        f"{plan.prompts} prompts x up to {plan.check_new_tokens} tokens, bfloat16; " + stop_counts(outs["batch 1"])
    )


def part_d(plan: Plan, part: Part) -> None:
    limit = ("--oom-rows", str(plan.oom_rows)) if plan.dry_run else ("--gpu-headroom-gib", str(plan.gpu_headroom_gib))
    ran, out = gpi_run(plan, "d_oom", "--batch-size", "auto", new_tokens=plan.oom_new_tokens, limit=limit)
    halvings = [line.strip() for line in ran.output.splitlines() if OOM_STATUS in line]
    part.check(bool(halvings), "no out-of-memory halving was reported")
    if not export_ok(part, ran, out, read_prompts(plan.prompts_csv), plan.oom_new_tokens, "run under the limit"):
        return
    sizes = [h.split(OOM_STATUS)[1].split("prompts")[0].strip() for h in halvings]
    last = halvings[-1].split("retrying them")[1].split("at a time")[0].strip() if halvings else "?"
    how = (
        f"allocator limited to the weights + {plan.gpu_headroom_gib:g} GiB"
        if not plan.dry_run
        else f"simulated: a batch of more than {plan.oom_rows} rows fails as out of memory"
    )
    part.figures += [
        how,
        f"batch halved {len(halvings)} times: {' -> '.join([*sizes, last])}",
        f"all {plan.prompts} prompts exported and checked; {ran.seconds:.0f} s",
    ]


def part_e(plan: Plan, part: Part) -> None:
    if plan.dry_run:
        part.ok = None
        part.figures.append("skipped in the dry run: bitsandbytes loads need an NVIDIA GPU")
        return
    import importlib.util

    if not part.check(importlib.util.find_spec("bitsandbytes") is not None, "bitsandbytes is not installed"):
        return
    prompts = read_prompts(plan.few_csv)
    for kind in ("8bit", "4bit"):
        ran, out = gpi_run(
            plan, f"e_{kind}", "--quantization", kind, prompts=plan.few_csv, new_tokens=plan.quant_new_tokens
        )
        if export_ok(part, ran, out, prompts, plan.quant_new_tokens, kind):
            recorded = manifest(out)["model"].get("quantization")
            part.check(recorded == kind, f"{kind}: the manifest records quantization {recorded}")
            part.figures.append(
                f"{kind}: {len(prompts)} prompts x {plan.quant_new_tokens} tokens in {ran.seconds:.0f} s"
            )


PARTS: dict[str, tuple[str, Callable[[Plan, Part], None]]] = {
    "a": ("gpi-desktop run end to end, export checked", part_a),
    "b": ("gpu_benchmark.py: loop, batch 1, auto batch", part_b),
    "c": ("bf16: batch 1 / auto batch / one at a time", part_c),
    "d": ("forced out of memory: batch halved, nothing lost", part_d),
    "e": ("8-bit and 4-bit loads generate", part_e),
}


def run_part(plan: Plan, key: str) -> Part:
    what, fn = PARTS[key]
    part = Part(key, what, ok=True)
    print(f"\n== part {key}: {what}", flush=True)
    started = time.perf_counter()
    try:
        fn(plan, part)
    except Exception as exc:
        part.problems.append(f"{type(exc).__name__}: {exc}")
    part.seconds = time.perf_counter() - started
    for problem in part.problems:
        print(f"  FAILED: {problem}", flush=True)
    return part


# --- the table ---------------------------------------------------------------------------------------


def environment_line(plan: Plan) -> str:
    import torch
    import transformers

    if plan.dry_run:
        device = "CPU (dry run)"
    else:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        device = out or "GPU (nvidia-smi said nothing)"
    return (
        f"{device}; torch {torch.__version__} (CUDA {torch.version.cuda}); transformers {transformers.__version__}; "
        f"{os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def summary_table(parts: list[Part], env: str, total: float, setup: float) -> str:
    from common import table

    rows = []
    for p in parts:
        notes = "; ".join([*p.figures, *p.targets, *(f"FAILED: {x}" for x in p.problems)]).replace("|", "/")
        rows.append([p.key, p.what, p.result, notes, f"{p.seconds:.0f} s"])
    limit = f"{TARGET_SECONDS // 60}-minute target"
    verdict = (
        f"the {limit} is the GPU's"
        if env.startswith("CPU")
        else (f"within the {limit}" if total <= TARGET_SECONDS else f"OVER the {limit}")
    )
    return "\n".join(
        [
            f"GPU check: {env}",
            "",
            table(["part", "checks", "result", "figures", "time"], rows),
            "",
            (f"total {total:.0f} s ({verdict}), of which {setup:.0f} s building and saving the model"),
        ]
    )


# --- setting up --------------------------------------------------------------------------------------


def write_prompts(plan: Plan) -> None:
    import pandas as pd
    from common import mixed_lengths

    lengths = mixed_lengths(plan.prompts, *plan.words, seed=28)
    texts = [" ".join(WORDS[(row * 7 + i) % len(WORDS)] for i in range(n)) for row, n in enumerate(lengths)]
    pd.DataFrame({"id": range(len(texts)), "text": texts}).to_csv(plan.prompts_csv, index=False)
    few = sorted(range(len(texts)), key=lambda r: lengths[r])[:: max(1, len(texts) // plan.quant_prompts)]
    pd.DataFrame({"id": few[: plan.quant_prompts], "text": [texts[r] for r in few[: plan.quant_prompts]]}).to_csv(
        plan.few_csv, index=False
    )


def model_place(dry_run: bool, work: Path) -> Path:
    """Where the model folder goes: RAM-backed /dev/shm when it has room (written and read at memory speed)."""
    need = 2**30 if dry_run else 20 * 2**30
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > need:
        return Path(tempfile.mkdtemp(prefix="gpi-gpu-check-model-", dir=shm))
    return work / "model"


def make_plan(args) -> Plan:
    work = Path(args.work or tempfile.mkdtemp(prefix="gpi-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    dry = args.dry_run
    new = args.new_tokens or (8 if dry else 128)
    bench = (
        (
            "--tiny",
            "--device",
            "cpu",
            "--prompts",
            "8",
            "--loop-prompts",
            "2",
            "--new-tokens",
            str(min(new, 8)),
            "--max-prompt",
            "60",
        )
        if dry
        else ("--prompts", "256", "--loop-prompts", "6")
    )
    return Plan(
        dry_run=dry,
        work=work,
        model=model_place(dry, work),
        prompts=args.prompts or (16 if dry else 64),
        new_tokens=new,
        check_new_tokens=args.check_new_tokens or (new if dry else 32),
        oom_new_tokens=min(new, 32),
        words=(1, 30) if dry else (4, 400),
        benchmark_args=(*bench, "--check-prompts", "0"),
        gpu_headroom_gib=args.gpu_headroom_gib,
        oom_rows=args.oom_rows,
        quant_prompts=4,
        quant_new_tokens=16,
        run_timeout=args.run_timeout or (1200 if dry else 300),
    )


def build_model(plan: Plan) -> Ran:
    return run_logged(
        plan, "build", [sys.executable, str(CHILD), "build", str(plan.model)] + (["--dry-run"] if plan.dry_run else [])
    )


def check(args) -> int:
    started = time.perf_counter()
    keys = [k for k in args.parts.split(",") if k]
    unknown = set(keys) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown part(s): {', '.join(sorted(unknown))}; the parts are {', '.join(PARTS)}")
    plan = make_plan(args)
    print(f"work folder {plan.work}; model folder {plan.model}", flush=True)
    try:
        write_prompts(plan)
        built = build_model(plan)
        if built.code != 0:
            print("building the model failed; no part can run", flush=True)
            return 1
        parts = [run_part(plan, k) for k in keys]
    finally:
        if not args.keep:
            shutil.rmtree(plan.model, ignore_errors=True)
    report = summary_table(parts, environment_line(plan), time.perf_counter() - started, built.seconds)
    print("\n" + report)
    (plan.work / "table.md").write_text(report + "\n", encoding="utf-8")
    print(f"\nlogs and exports in {plan.work}")
    return 1 if any(p.result == "FAIL" for p in parts) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="on the CPU with a tiny model")
    parser.add_argument("--parts", default=",".join(PARTS), help="which parts, e.g. a,d (default all)")
    parser.add_argument("--prompts", type=int, help="prompts in parts a, c and d (default 64; dry run 16)")
    parser.add_argument("--new-tokens", type=int, help="parts a and d (default 128; dry run 8)")
    parser.add_argument("--check-new-tokens", type=int, help="part c (default 32, so it fits; dry run as --new-tokens)")
    parser.add_argument("--gpu-headroom-gib", type=float, default=2.0, help="part d: GPU memory beyond the weights")
    parser.add_argument("--oom-rows", type=int, default=2, help="part d, dry run: larger batches fail")
    parser.add_argument("--run-timeout", type=float, help="seconds any one run may take (default 300; dry run 1200)")
    parser.add_argument("--work", help="folder for the prompts, exports and logs (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the model folder")
    return check(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

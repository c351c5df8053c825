"""GPI's estimator (core/estimate) against gpi_pack 0.2.1's estimate_k_ate, in one process, on simulated data.

    python benchmarks/estimate_benchmark.py speed [--n 2000] [--width 4096] [--epochs N] [--threads 1]
    python benchmarks/estimate_benchmark.py coverage [--n 1000] [--width 64] [--reps 20] [--threads 1]
    python benchmarks/estimate_benchmark.py steps [--width 4096] [--threads 1]

speed: both estimators on the same data (a known effect, confounding carried only by the vectors), 2 folds,
gpi_pack's defaults (2048-wide deconfounder, [200, 1] outcome layers, batch 32, learning rate 2e-5), the
reference first, then ours; with --epochs the number of epochs is fixed for both (patience set beyond it), so
the time per epoch is compared where a full run would take hours on a loaded machine.
steps: where one training step of gpi_pack's default network goes (forward and backward, clipping, the AdamW
step), with gpi_pack's multi-tensor AdamW and with the fused one GPI Desktop uses.
coverage: over --reps simulated studies, how often each estimator's 95% interval covers the true effect, with
the small networks of the tests (tests/estimate_sim.py) so that the replications fit in minutes.
gpi_pack is loaded by path (tests/gpi_pack_reference.py); install it with pip install --no-deps gpi-pack==0.2.1.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from estimate_sim import simulate, small_settings  # noqa: E402
from gpi_pack_reference import load_reference, quiet  # noqa: E402

from gpi_desktop.core.estimate.crossfit import cross_fit  # noqa: E402
from gpi_desktop.core.estimate.settings import EstimateSettings  # noqa: E402
from gpi_desktop.core.vocabulary.progress import NullState  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} CPUs, load average {load:.1f}"


def reference_run(reference, study, settings: EstimateSettings) -> tuple[float, float]:
    with quiet():
        return reference.estimate_k_ate(
            study.r,
            study.y,
            study.t,
            K=settings.folds,
            nepoch=settings.epochs,
            lr=settings.learning_rate,
            batch_size=settings.batch_size,
            patience=settings.patience,
            dropout=settings.dropout,
            architecture_z=list(settings.representation_layers),
            architecture_y=list(settings.outcome_layers),
            ps_model_params={"lr": settings.ps_learning_rate},
            verbose=False,
            plot_propensity=False,
        )


def speed(args, reference) -> None:
    study = simulate(args.n, args.width, seed=args.seed)
    fixed = {"epochs": args.epochs, "patience": args.epochs + 1} if args.epochs else {}
    settings = EstimateSettings(seed=args.seed, **fixed)
    print(
        f"speed: N {args.n} x width {args.width}, 2 folds, gpi_pack's defaults"
        + (f", {args.epochs} epochs fixed" if args.epochs else "")
        + f", {args.threads} torch thread(s)"
    )
    print(f"machine: {machine()}", flush=True)
    start = time.perf_counter()
    ate_ref, se_ref = reference_run(reference, study, settings)
    t_ref = time.perf_counter() - start
    print(f"gpi_pack estimate_k_ate: {t_ref:8.1f} s  ATE {ate_ref:.3f} (SE {se_ref:.3f})", flush=True)
    start = time.perf_counter()
    ours = cross_fit(study.design(), settings, NullState())
    t_ours = time.perf_counter() - start
    epochs = [len(trace.valid) for trace in ours.losses]
    print(
        f"GPI Desktop cross_fit:   {t_ours:8.1f} s  ATE {ours.summary.ate:.3f} (SE {ours.summary.se:.3f}); "
        f"epochs per fold {epochs}"
    )
    print(
        f"ratio gpi_pack / ours: {t_ref / t_ours:.2f}x  (true effect {study.effect}; load after: "
        f"{os.getloadavg()[0]:.1f})"
    )


def steps(args) -> None:
    import torch

    from gpi_desktop.core.estimate.tarnet import TarNetModule

    settings = EstimateSettings()
    x, t, y = torch.randn(32, args.width), torch.randint(0, 2, (32, 1)).float(), torch.randn(32, 1)
    print(
        f"steps: batch 32, width {args.width}, gpi_pack's default network, {args.threads} torch thread(s); "
        f"machine: {machine()}"
    )
    for name, options in (
        ("gpi_pack (multi-tensor AdamW)", {"foreach": True}),
        ("GPI Desktop (fused AdamW)", {"fused": True}),
    ):
        model = TarNetModule(args.width, 0, settings, torch.Generator().manual_seed(0))
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, eps=1e-8, **options)
        spent = np.zeros(3)
        for i in range(12):
            marks = [time.perf_counter()]
            optimizer.zero_grad(set_to_none=True)
            torch.mean((model(x, t) - y) ** 2).backward()
            marks.append(time.perf_counter())
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
            marks.append(time.perf_counter())
            optimizer.step()
            marks.append(time.perf_counter())
            if i >= 2:  # the first steps allocate the optimiser's state
                spent += np.diff(marks)
        per = spent / 10 * 1000
        print(f"  {name:30s} forward+backward {per[0]:6.0f} ms  clipping {per[1]:5.0f} ms  step {per[2]:6.0f} ms")


def coverage(args, reference) -> None:
    print(
        f"coverage: {args.reps} studies, N {args.n} x width {args.width}, small networks (tests/estimate_sim.py)"
        f"{f', deconfounder {args.representation} wide' if args.representation else ''}"
        f"{f', at most {args.epochs} epochs' if args.epochs else ''}, "
        f"{args.threads} torch thread(s); machine: {machine()}",
        flush=True,
    )
    rows = {"gpi_pack": [], "ours": []}
    for rep in range(args.reps):
        study = simulate(args.n, args.width, seed=1000 + rep)
        settings = small_settings(
            seed=rep,
            **({"representation_layers": (args.representation,)} if args.representation else {}),
            **({"epochs": args.epochs} if args.epochs else {}),
        )
        ate, se = reference_run(reference, study, settings)
        summary = cross_fit(study.design(), settings, NullState()).summary
        rows["gpi_pack"].append((ate, se))
        rows["ours"].append((summary.ate, summary.se))
        print(
            f"  study {rep + 1:3d}: gpi_pack {ate:7.3f} ({se:.3f})  ours {summary.ate:7.3f} ({summary.se:.3f})  "
            f"naive {study.naive:6.3f}",
            flush=True,
        )
    for name, values in rows.items():
        est = np.array(values)
        covered = np.abs(est[:, 0] - 1.0) <= 1.959964 * est[:, 1]
        print(
            f"{name:9s} coverage of the 95% interval {covered.mean():.0%} ({covered.sum()}/{len(est)}); "
            f"mean estimate {est[:, 0].mean():.3f}, sd {est[:, 0].std(ddof=1):.3f}, mean SE {est[:, 1].mean():.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["speed", "coverage", "steps"])
    parser.add_argument("--n", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="speed: fix the epochs for both (0: early stopping); "
        "coverage: at most this many epochs instead of the small networks' 60",
    )
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument(
        "--representation",
        type=int,
        default=0,
        help="coverage: the deconfounder's width instead of the small networks' 32",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.what == "steps":
        args.width = args.width or 4096
        steps(args)
        return 0
    reference = load_reference()
    if reference is None:
        print("gpi_pack is not installed: pip install --no-deps gpi-pack==0.2.1", file=sys.stderr)
        return 2
    if args.what == "speed":
        args.n, args.width = args.n or 2000, args.width or 4096
        speed(args, reference)
    else:
        args.n, args.width = args.n or 1000, args.width or 64
        coverage(args, reference)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

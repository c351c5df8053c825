"""`gpi-desktop estimate`: the effect of a text feature from an export's vectors (GPI's estimator), into a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpi_desktop.cli.state import CliState, stop_on_signals
from gpi_desktop.core.vocabulary.errors import EXIT_OK

STOPPED = "Stopped; no report was written."


def add_estimate_parser(sub) -> None:
    from gpi_desktop.core.estimate.settings import EstimateSettings

    d = EstimateSettings()
    p = sub.add_parser(
        "estimate",
        help="estimate the effect of a text feature from an export's vectors (GPI)",
        description="Estimate the average treatment effect with GPI's estimator (gpi_pack 0.2.1's estimate_k_ate: "
        "cross-fitted TarNet, spectrally normalised propensity model, doubly robust scores) from an "
        "export folder of GPI Desktop or gpi_pack, and write a report folder.",
    )
    p.add_argument(
        "--vectors",
        required=True,
        metavar="EXPORT",
        help="the export folder (manifest.json, or gpi_pack's hidden_<k>.pt files)",
    )
    p.add_argument(
        "--data",
        metavar="FILE",
        help="CSV, TSV or Excel file with one row per vector (default: the "
        "prompts file the export was made from, found next to the export, else the export's own table)",
    )
    p.add_argument("--treatment", required=True, metavar="COL", help="the column with the two treatment values")
    p.add_argument("--outcome", required=True, metavar="COL", help="the numeric outcome column")
    p.add_argument(
        "--treated",
        metavar="VALUE",
        help="the treatment value that means treated (needed unless the values are 0 and 1)",
    )
    p.add_argument("--id", metavar="COL", help="pair data rows with vectors by this column instead of by order")
    p.add_argument("--confounders", metavar="A,B", default="", help="columns appended to the representation")
    p.add_argument("--cluster", metavar="COL", help="cluster column: standard errors clustered by it")
    p.add_argument("--folds", type=int, default=d.folds, help=f"cross-fitting folds (default {d.folds})")
    p.add_argument("--seed", type=int, default=d.seed, help="fixes the folds, splits and networks (default 0)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"at most this many epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help=f"default {d.learning_rate:g}")
    p.add_argument(
        "--validation-share",
        type=float,
        default=d.validation_share,
        help=f"share of the training rows for early stopping (default {d.validation_share})",
    )
    p.add_argument("--out", required=True, metavar="REPORT", help="the report folder")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")
    p.add_argument("--quiet", action="store_true", help="print only errors and the result")
    p.set_defaults(handler=cmd_estimate, stopped=STOPPED)


def request_from(args: argparse.Namespace):
    from gpi_desktop.core.estimate.settings import EstimateRequest, EstimateSettings

    settings = EstimateSettings(
        folds=args.folds,
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        validation_share=args.validation_share,
    )
    confounders = tuple(c.strip() for c in args.confounders.split(",") if c.strip())
    return EstimateRequest(
        vectors=Path(args.vectors),
        data=Path(args.data) if args.data else None,
        treatment=args.treatment,
        outcome=args.outcome,
        treated=args.treated,
        id_column=args.id,
        confounders=confounders,
        cluster=args.cluster,
        settings=settings,
    )


def cmd_estimate(args: argparse.Namespace) -> int:
    from gpi_desktop.core.estimate.run import run_estimate

    request = request_from(args)
    state = CliState(quiet=args.quiet)
    with stop_on_signals(state):
        result = run_estimate(request, Path(args.out), state, overwrite=args.overwrite, also_look_in=(Path.cwd(),))
    summary, design = result.estimate.summary, result.design
    low, high = summary.ci95
    lines = [
        (
            f"ATE {summary.ate:.4g} (SE {summary.se:.4g}; 95% interval {low:.4g} to {high:.4g}), "
            f"{design.n} rows used, {design.left_out.rows} left out ({design.left_out.words()})."
        ),
        result.overlap,
        *result.warnings,
        f"Report: {Path(args.out).absolute()}",
    ]
    print("\n".join(lines), file=sys.stdout)
    return EXIT_OK

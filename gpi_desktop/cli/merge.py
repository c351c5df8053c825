"""`gpi-desktop merge JOBDIR --out OUT`: the shard folders of a cluster job into one export folder."""

from __future__ import annotations

import sys
from pathlib import Path

from gpi_desktop.cli.state import CliState, stop_on_signals
from gpi_desktop.core.vocabulary.errors import EXIT_OK, InputError


def add_merge_parser(sub) -> None:
    merge = sub.add_parser(
        "merge",
        help="merge the shard folders of a cluster job into one export folder",
        description="Check that the shard folders come from one job and hold every row once, "
        "then write one export folder as a single-machine run writes it.",
    )
    merge.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="the job folder (from any folder), or its shard folders (for example job/shards/*)",
    )
    merge.add_argument("--out", required=True, help="the folder for the merged export")
    merge.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    merge.add_argument("--quiet", action="store_true", help="print only errors and the final line")
    merge.add_argument(
        "--allow-mixed-devices",
        action="store_true",
        help="merge shards that ran on different devices or precisions (greedy texts can differ "
        "between them; the manifest records each shard's device)",
    )
    merge.set_defaults(handler=run_merge)


def unexpanded_pattern(dirs: list[str]) -> str | None:
    """A shell pattern that matched nothing reaches us as typed ('shards/*'); the sentence saying what to type."""
    for text in dirs:
        if any(c in text for c in "*?[") and not Path(text).exists():
            return (
                f"'{text}' matched no folder in {Path.cwd()} (the shell passes a pattern that matches nothing "
                "as it is): give the job folder itself, which works from any folder, for example: gpi-desktop "
                "merge ~/job --out ~/job-export"
            )
    return None


def run_merge(args) -> int:
    from gpi_desktop.core.cluster.shards import merge_shards

    pattern = unexpanded_pattern(args.dirs)
    if pattern is not None:
        raise InputError(pattern)
    state = CliState(quiet=args.quiet)
    with stop_on_signals(state):
        summary = merge_shards(
            args.dirs,
            Path(args.out),
            overwrite=args.overwrite,
            state=state,
            allow_mixed_devices=args.allow_mixed_devices,
        )
    print(
        f"Merged: {summary.n_rows} texts and hidden states (width {summary.hidden_size}) in {summary.folder}.",
        file=sys.stdout,
    )
    return EXIT_OK

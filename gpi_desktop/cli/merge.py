"""`gpi-desktop merge DIR... --out OUT`: the shard folders of a cluster job into one export folder."""

from __future__ import annotations

import sys
from pathlib import Path

from gpi_desktop.cli.state import CliState, stop_on_signals
from gpi_desktop.core.vocabulary.errors import EXIT_OK


def add_merge_parser(sub) -> None:
    merge = sub.add_parser("merge", help="merge the shard folders of a cluster job into one export folder",
                           description="Check that the shard folders come from one job and hold every row once, "
                                       "then write one export folder as a single-machine run writes it.")
    merge.add_argument("dirs", nargs="+", metavar="DIR",
                       help="shard folders (for example shards/*), or the job folder that holds them")
    merge.add_argument("--out", required=True, help="the folder for the merged export")
    merge.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    merge.add_argument("--quiet", action="store_true", help="print only errors and the final line")
    merge.add_argument("--allow-mixed-devices", action="store_true",
                       help="merge shards that ran on different devices or precisions (greedy texts can differ "
                            "between them; the manifest records each shard's device)")
    merge.set_defaults(handler=run_merge)


def run_merge(args) -> int:
    from gpi_desktop.core.cluster.shards import merge_shards

    state = CliState(quiet=args.quiet)
    with stop_on_signals(state):
        summary = merge_shards(args.dirs, Path(args.out), overwrite=args.overwrite, state=state,
                               allow_mixed_devices=args.allow_mixed_devices)
    print(f"Merged: {summary.n_rows} texts and hidden states (width {summary.hidden_size}) in {summary.folder}.",
          file=sys.stdout)
    return EXIT_OK

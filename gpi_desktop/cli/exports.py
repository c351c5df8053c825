"""`gpi-desktop inspect FOLDER` and `gpi-desktop compare A B`: what an export was made with, and two side by side."""

from __future__ import annotations

import sys

from gpi_desktop.cli.state import CliState
from gpi_desktop.core.vocabulary.errors import EXIT_BAD_INPUT, EXIT_OK


def add_export_parsers(sub) -> None:
    inspect = sub.add_parser(
        "inspect",
        help="say what an export folder was made with and check its files' checksums",
        description="Print, in plain words, the model, revision, template, template date, settings and inputs an "
        "export folder was made with, then check every file against the checksums in its manifest "
        "(exit code 2 if any file is missing or changed).",
    )
    inspect.add_argument("folder", metavar="EXPORT_FOLDER")
    inspect.set_defaults(handler=run_inspect)
    compare = sub.add_parser(
        "compare",
        help="say whether two exports were made the same way and how far their results differ",
        description="Compare two export folders: same model, revision, template, date, settings and inputs, and "
        "how far their texts (identical share) and vectors (largest difference, cosine) differ.",
    )
    compare.add_argument("a", metavar="A")
    compare.add_argument("b", metavar="B")
    compare.set_defaults(handler=run_compare)


def run_inspect(args) -> int:
    from gpi_desktop.core.output.provenance import inspect_export

    report = inspect_export(args.folder, CliState(quiet=True))
    print("\n".join(report.lines()))
    return EXIT_OK if report.ok else EXIT_BAD_INPUT


def run_compare(args) -> int:
    from gpi_desktop.core.output.compare import compare_exports

    comparison = compare_exports(args.a, args.b, CliState(quiet=True))
    print("\n".join(comparison.lines()), file=sys.stdout)
    return EXIT_OK

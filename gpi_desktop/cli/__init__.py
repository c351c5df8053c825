"""The command line, `gpi-desktop`: one module per command (run, merge, token, inspect/compare), `entry` to parse and dispatch.

`main` is imported here so that the console script and the frozen app keep the
entry point `gpi_desktop.cli:main`.
"""

from gpi_desktop.cli.entry import main

__all__ = ["main"]

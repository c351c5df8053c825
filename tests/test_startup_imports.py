"""What the window and the command line import before they are asked to do anything (start-up time)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"QT_QPA_PLATFORM": "offscreen", **__import__("os").environ},
    )
    return set(out.stdout.split())


@pytest.mark.parametrize("statement", ["import gpi_desktop.ui.main_window", "import gpi_desktop.cli.entry"])
def test_starting_imports_neither_pandas_nor_torch(statement):
    # pandas costs about 0.5 s and torch 2.5 s here: they load when a table is read or a model is run.
    loaded = _imported_after(statement)
    assert "pandas" not in loaded and "torch" not in loaded and "transformers" not in loaded
    assert "matplotlib" not in loaded and "sklearn" not in loaded  # the estimate step's plots load when shown

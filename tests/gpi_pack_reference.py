"""gpi_pack 0.2.1's estimator, loaded by path (its package __init__ imports diffusers): for tests and benchmarks.

    reference = load_reference()            # None when gpi_pack is not installed
    ate, se = reference.estimate_k_ate(R, Y, T, K=2, nepoch=..., verbose=False, plot_propensity=False)

TarNet.py imports patsy only for formulas; a stand-in is put in its place when patsy is missing. matplotlib runs
on the Agg backend so that the reference's plt.show() draws nothing; its prints are silenced by `quiet()`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import types
from pathlib import Path

PACKAGE = "gpi_pack_reference"


def gpi_pack_folder() -> Path | None:
    spec = importlib.util.find_spec("gpi_pack")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def load_reference() -> types.ModuleType | None:
    """gpi_pack's TarNet module (estimate_k_ate, load_hiddens), or None when gpi_pack is not installed."""
    if f"{PACKAGE}.TarNet" in sys.modules:
        return sys.modules[f"{PACKAGE}.TarNet"]
    folder = gpi_pack_folder()
    if folder is None or not (folder / "TarNet.py").is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    if importlib.util.find_spec("patsy") is None:
        patsy = types.ModuleType("patsy")
        patsy.dmatrix = None  # only formula_C uses it
        sys.modules["patsy"] = patsy
    package = types.ModuleType(PACKAGE)
    package.__path__ = [str(folder)]
    sys.modules[PACKAGE] = package
    for name in ("_tuning", "TNutil", "TarNet"):
        spec = importlib.util.spec_from_file_location(f"{PACKAGE}.{name}", folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules[f"{PACKAGE}.TarNet"]


@contextlib.contextmanager
def quiet():
    """The reference prints every epoch and its propensity accuracy; keep the test output readable."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield

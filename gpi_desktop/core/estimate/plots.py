"""The estimate's two plots as matplotlib Figures (no pyplot: nothing is shown, no global state, any thread).

The report saves them as PNG (`save_png`); the window draws the same Figure through matplotlib's Qt backend.
matplotlib is imported when a plot is made, never at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gpi_desktop.core.estimate.crossfit import Estimate
    from gpi_desktop.core.estimate.design import Design
    from gpi_desktop.core.estimate.tarnet import LossTrace

TREATED_COLOUR, CONTROL_COLOUR = "#d95f02", "#1b9e77"


def propensity_figure(design: Design, estimate: Estimate, trim: tuple[float, float]) -> Figure:
    """Histograms of the propensity scores of the two arms: where they do not overlap, GPI has little to go on."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 3.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    bins = [i / 40 for i in range(41)]
    for arm, label, colour in (
        (1, f"treated ({design.treated_value})", TREATED_COLOUR),
        (0, f"control ({design.control_value})", CONTROL_COLOUR),
    ):
        axes.hist(estimate.propensity[design.t == arm], bins=bins, alpha=0.55, density=True, label=label, color=colour)
    for bound in trim:
        axes.axvline(bound, color="0.4", linestyle=":", linewidth=1)
    axes.set_xlim(0, 1)
    axes.set_xlabel("estimated propensity score (before trimming)")
    axes.set_ylabel("density")
    axes.set_title("Overlap of the two groups")
    axes.legend(loc="upper center", fontsize="small")
    return figure


def loss_figure(losses: tuple[LossTrace, ...]) -> Figure:
    """The validation loss of each fold's outcome model by epoch; the kept epoch marked."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 3.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    for k, trace in enumerate(losses):
        (line,) = axes.plot(np.arange(1, len(trace.valid) + 1), trace.valid, label=f"fold {k + 1}")
        if trace.best_epoch >= 0:
            axes.plot([trace.best_epoch + 1], [trace.valid[trace.best_epoch]], "o", color=line.get_color())
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation loss (mean squared error)")
    axes.set_title("Outcome model: validation loss")
    axes.plot([], [], "o", color="0.3", label="weights kept")
    if losses:
        axes.legend(fontsize="small")
    return figure


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes (the caller writes them atomically); no timestamp, so the bytes repeat."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=150, metadata={"Software": None})
    return buffer.getvalue()

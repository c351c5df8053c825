"""Step 7's results: the effect with its interval, the rows used, the overlap in words, and the two plots.

The plots are the report's own matplotlib Figures, drawn through matplotlib's Qt backend (imported here, when the
first result is shown, never at start-up).
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

PLOT_HEIGHT = 300


def headline_html(result) -> str:
    summary, design = result.estimate.summary, result.design
    low, high = summary.ci95
    request = result.request
    clustered = (
        f", clustered by {html.escape(request.cluster)} ({summary.n_clusters} clusters)" if request.cluster else ""
    )
    return (
        f"<p style='font-size:15pt'><b>Effect (ATE): {summary.ate:.4g}</b> &nbsp; standard error "
        f"{summary.se:.4g}{clustered} &nbsp; 95% interval {low:.4g} to {high:.4g}</p>"
        f"<p>Treated: '{html.escape(request.treatment)}' = '{html.escape(design.treated_value)}', against "
        f"'{html.escape(design.control_value)}'; outcome '{html.escape(request.outcome)}'.</p>"
    )


def rows_html(result) -> str:
    design, est = result.design, result.estimate
    left = design.left_out
    treated, control = design.arm_sizes
    return (
        f"<p>{design.n:,} rows used ({treated:,} treated, {control:,} control); {left.rows:,} left out "
        f"({html.escape(left.words())}). Propensity scores trimmed to [{result.request.settings.trim[0]}, "
        f"{result.request.settings.trim[1]}]: {est.trimmed_share:.1%}. Seed {result.request.settings.seed}.</p>"
    )


class EstimateResults(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.headline = QLabel()
        self.rows = QLabel()
        self.overlap = QLabel()
        self.warnings = QLabel()
        for label in (self.headline, self.rows, self.overlap, self.warnings):
            label.setWordWrap(True)
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plots = QHBoxLayout()
        self.report_label = QLabel()
        self.report_label.setWordWrap(True)
        self.open_button = QPushButton("Open the report folder")
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.headline, self.rows, self.overlap, self.warnings):
            layout.addWidget(widget)
        layout.addLayout(self.plots)
        layout.addWidget(self.report_label)
        layout.addLayout(buttons)
        self.canvases: list[QWidget] = []
        self.folder: Path | None = None
        self.hide()

    def show_result(self, result, figures: tuple, folder: Path) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

        self.folder = folder
        self.headline.setText(headline_html(result))
        self.rows.setText(rows_html(result))
        colour = "#b00020" if result.overlap_poor else "palette(text)"
        self.overlap.setText(f"<p style='color:{colour}'>{html.escape(result.overlap)}</p>")
        self.warnings.setText("".join(f"<p style='color:#b00020'>{html.escape(w)}</p>" for w in result.warnings))
        self.warnings.setVisible(bool(result.warnings))
        for canvas in self.canvases:
            self.plots.removeWidget(canvas)
            canvas.deleteLater()
        self.canvases = []
        for figure in figures:
            canvas = FigureCanvasQTAgg(figure)
            canvas.setMinimumHeight(PLOT_HEIGHT)
            canvas.setMinimumWidth(240)
            self.plots.addWidget(canvas, 1)
            self.canvases.append(canvas)
        self.report_label.setText(f"The report (numbers, plots, settings, a methods paragraph) is in {folder}.")
        self.show()

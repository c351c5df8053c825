"""The whole estimate, what both front ends call:

    prepared = prepare(request, state)                 # vectors, data, columns: every check, fast, no training
    result = estimate(prepared, state)                 # the cross-fitted estimator; Stop raises Cancelled
    write_report(result, folder, overwrite=False)      # report.py

or `run.run_estimate(request, folder, state)` for all three. Nothing is written before the estimate is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gpi_desktop.core.estimate.columns import build_design
from gpi_desktop.core.estimate.crossfit import Estimate, cross_fit
from gpi_desktop.core.estimate.datafile import DataRows, default_data_path, read_data
from gpi_desktop.core.estimate.design import Design
from gpi_desktop.core.estimate.settings import EstimateRequest
from gpi_desktop.core.estimate.vectors import Vectors, load_vectors
from gpi_desktop.core.estimate.words import overlap_words
from gpi_desktop.core.vocabulary.progress import NullState, TaskState

if TYPE_CHECKING:  # pandas is imported where a table is read
    import pandas as pd


@dataclass(frozen=True, eq=False)
class Prepared:
    request: EstimateRequest
    vectors: Vectors
    data: DataRows
    design: Design
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class EstimateResult:
    prepared: Prepared
    estimate: Estimate
    overlap_poor: bool
    overlap: str  # the overlap verdict in words
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def request(self) -> EstimateRequest:
        return self.prepared.request

    @property
    def design(self) -> Design:
        return self.prepared.design


@dataclass(frozen=True, eq=False)
class DataPreview:
    """The data file an estimate would read (for the window's choice of columns) and the number of vectors."""

    path: Path
    frame: pd.DataFrame  # every cell as text
    n_vectors: int

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]


def preview_data(vectors: Path, data: Path | None, also_look_in: tuple[Path, ...] = ()) -> DataPreview:
    """Which data file, and its columns; raises a GpiError when there is none to read."""
    from gpi_desktop.core.files.prompts import read_table

    found = load_vectors(vectors, NullState())
    path = data or default_data_path(found, also_look_in)
    frame, _meta = read_table(path)
    return DataPreview(path=path, frame=frame, n_vectors=found.n)


def prepare(request: EstimateRequest, state: TaskState, also_look_in: tuple[Path, ...] = ()) -> Prepared:
    """Reads and checks everything; raises a GpiError in one plain sentence for what cannot be estimated."""
    state.set_status("Reading the vectors…")
    vectors = load_vectors(request.vectors, state)
    path = request.data or default_data_path(vectors, also_look_in)
    state.set_status(f"Reading {path.name}…")
    data = read_data(path, vectors, request.id_column)
    design, warnings = build_design(vectors, data, request)
    return Prepared(request=request, vectors=vectors, data=data, design=design, warnings=tuple(warnings))


def estimate(prepared: Prepared, state: TaskState) -> EstimateResult:
    settings = prepared.request.settings
    result = cross_fit(prepared.design, settings, state)
    poor, words = overlap_words(prepared.design, result, settings.trim)
    return EstimateResult(
        prepared=prepared, estimate=result, overlap_poor=poor, overlap=words, warnings=prepared.warnings
    )

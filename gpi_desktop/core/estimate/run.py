"""`run_estimate`: check, estimate and write the report in one call (the command line's `estimate`)."""

from __future__ import annotations

from pathlib import Path

from gpi_desktop.core.estimate.pipeline import EstimateResult, estimate, prepare
from gpi_desktop.core.estimate.report import check_report_folder, write_report
from gpi_desktop.core.estimate.settings import EstimateRequest
from gpi_desktop.core.vocabulary.progress import TaskState


def run_estimate(
    request: EstimateRequest,
    folder: Path,
    state: TaskState,
    *,
    overwrite: bool = False,
    also_look_in: tuple[Path, ...] = (),
) -> EstimateResult:
    """The report folder is checked first, so that a folder in the way is said before minutes of training."""
    check_report_folder(folder, overwrite)
    result = estimate(prepare(request, state, also_look_in), state)
    state.set_status("Writing the report…")
    write_report(result, folder, overwrite=overwrite)
    return result

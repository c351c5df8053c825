"""The data's columns as the estimator needs them: treatment 1/0, a numeric outcome, confounders, clusters.

Rows with a missing treatment, outcome, confounder or cluster are left out and counted (never silently). A text
confounder becomes one 0/1 column per value after its first (in sorted order), as a formula would code it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gpi_desktop.core.estimate.datafile import DataRows, column_list
from gpi_desktop.core.estimate.design import Design, LeftOut
from gpi_desktop.core.estimate.settings import WARN_BELOW_PER_ARM, EstimateRequest
from gpi_desktop.core.estimate.vectors import Vectors
from gpi_desktop.core.vocabulary.errors import EstimateInputError, Remedy

if TYPE_CHECKING:
    import pandas as pd

MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "missing", ".", "#n/a"})
_LISTED = 5


@dataclass(frozen=True)
class Arms:
    treated: str
    control: str


def is_missing(cell: object) -> bool:
    return str(cell).strip().lower() in MISSING


def _number(cell: str) -> float | None:
    try:
        value = float(str(cell).strip())
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def treatment_values(frame: pd.DataFrame, column: str) -> list[str]:
    """The column's distinct values (missing cells aside), in order of first appearance."""
    seen: dict[str, None] = {}
    for cell in frame[column]:
        if not is_missing(cell):
            seen.setdefault(str(cell).strip(), None)
    return list(seen)


def choose_arms(values: list[str], column: str, treated: str | None) -> Arms:
    """Which value means treated: the given one, else 1 when the values are 0 and 1; else the user is asked."""
    if len(values) != 2:
        shown = ", ".join(f"'{v}'" for v in values[:_LISTED]) + (", …" if len(values) > _LISTED else "")
        what = (
            f"only the value {shown}"
            if len(values) == 1
            else f"{len(values)} values ({shown})"
            if values
            else "no values"
        )
        raise EstimateInputError(
            f"The treatment column '{column}' has {what}: it needs exactly two, one for the "
            "treated rows and one for the others."
        )
    if treated is not None:
        match = [
            v for v in values if v == treated.strip() or (_number(v) is not None and _number(v) == _number(treated))
        ]
        if not match:
            raise EstimateInputError(
                f"The treated value '{treated}' is not in the treatment column '{column}', which "
                f"holds '{values[0]}' and '{values[1]}'."
            )
        return Arms(treated=match[0], control=next(v for v in values if v != match[0]))
    numbers = sorted((_number(v), v) for v in values if _number(v) is not None)
    if len(numbers) == 2 and [n for n, _ in numbers] == [0.0, 1.0]:
        return Arms(treated=numbers[1][1], control=numbers[0][1])
    raise EstimateInputError(
        f"The treatment column '{column}' holds '{values[0]}' and '{values[1]}'", remedy=Remedy.PICK_TREATED
    )


def _need_columns(frame: pd.DataFrame, names: list[str], file_name: str) -> None:
    for name in names:
        if name not in frame.columns:
            raise EstimateInputError(
                f"{file_name} has no column '{name}' (it has {column_list(frame)}): give the "
                "column's name as its header row writes it."
            )


def _outcome(frame: pd.DataFrame, column: str, file_name: str) -> np.ndarray:
    """The outcome as numbers, NaN where missing; a cell that is neither is refused."""
    values = np.full(len(frame), np.nan)
    bad = []
    for row, cell in enumerate(frame[column]):
        if is_missing(cell):
            continue
        number = _number(cell)
        if number is None:
            bad.append(row)
        else:
            values[row] = number
    if bad:
        shown = ", ".join(f"row {r} ('{frame[column].iloc[r]}')" for r in bad[:_LISTED])
        raise EstimateInputError(
            f"The outcome column '{column}' of {file_name} must hold numbers, but {len(bad)} "
            f"cells do not: {shown}; rows count from 0. Write numbers there, or leave a cell "
            "empty to leave its row out."
        )
    return values


def _confounder(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, list[str]]:
    """(n, k) float columns with NaN where missing, and their names."""
    cells = [str(c).strip() for c in frame[column]]
    present = [c for c in cells if not is_missing(c)]
    if all(_number(c) is not None for c in present):
        return np.array([np.nan if is_missing(c) else _number(c) for c in cells], dtype=np.float64)[:, None], [column]
    levels = sorted(set(present))[1:]
    out = np.array(
        [[np.nan if is_missing(c) else float(c == level) for level in levels] for c in cells], dtype=np.float64
    ).reshape(len(cells), len(levels))
    return out, [f"{column}={level}" for level in levels]


def build_design(vectors: Vectors, data: DataRows, request: EstimateRequest) -> tuple[Design, list[str]]:
    """The rows used, and warnings in words; refuses what cannot be estimated in one plain sentence."""
    frame, name = data.frame, data.path.name
    if {request.treatment, request.outcome} & set(request.confounders):
        raise EstimateInputError(
            "A confounder cannot be the treatment or the outcome column: leave it out of the confounders."
        )
    wanted = [request.treatment, request.outcome, *request.confounders] + ([request.cluster] if request.cluster else [])
    _need_columns(frame, wanted, name)
    arms = choose_arms(treatment_values(frame, request.treatment), request.treatment, request.treated)
    no_t = np.array([is_missing(c) for c in frame[request.treatment]])
    y = _outcome(frame, request.outcome, name)
    parts = [_confounder(frame, c) for c in request.confounders]
    c = np.hstack([p[0] for p in parts]) if parts else None
    no_c = np.isnan(c).any(axis=1) if c is not None else np.zeros(len(frame), bool)
    clusters = np.array([str(v).strip() for v in frame[request.cluster]]) if request.cluster else None
    no_cluster = np.array([is_missing(v) for v in clusters]) if clusters is not None else np.zeros(len(frame), bool)
    no_y = np.isnan(y) & ~no_t
    no_c &= ~no_t & ~no_y
    no_cluster &= ~no_t & ~no_y & ~no_c
    keep = ~(no_t | no_y | no_c | no_cluster)
    used = np.flatnonzero(keep)
    left = LeftOut(
        treatment=int(no_t.sum()),
        outcome=int(no_y.sum()),
        confounders=int(no_c.sum()),
        cluster=int(no_cluster.sum()),
        unmatched_vectors=vectors.n - len(set(data.vector_rows.tolist())),
    )
    t = np.array([str(frame[request.treatment].iloc[i]).strip() == arms.treated for i in used], dtype=np.int8)
    design = Design(
        r=vectors.matrix[data.vector_rows[used]],
        t=t,
        y=y[used],
        c=None if c is None else c[used].astype(np.float32),
        clusters=None if clusters is None else clusters[used],
        data_rows=used,
        treated_value=arms.treated,
        control_value=arms.control,
        confounder_names=tuple(n for p in parts for n in p[1]),
        left_out=left,
    )
    return design, check_arms(design, request)


def check_arms(design: Design, request: EstimateRequest) -> list[str]:
    """Refuses arms too small for the folds; warns under WARN_BELOW_PER_ARM rows per arm."""
    folds = request.settings.folds
    need = 2 * folds  # each fold's held-out rows hold two of each arm: one for each half of the propensity model
    treated, control = design.arm_sizes
    for label, size, value in (("treated", treated, design.treated_value), ("control", control, design.control_value)):
        if size < need:
            raise EstimateInputError(
                f"Only {size} rows are {label} ('{request.treatment}' = '{value}') once rows with "
                f"missing values are left out; {folds} folds need at least {need} in each group: "
                "add rows, or use fewer folds."
            )
    if design.clusters is not None and np.unique(design.clusters).size < 2:
        raise EstimateInputError(
            f"The cluster column '{request.cluster}' has one cluster only: clustered standard errors need two or more."
        )
    small = [f"{n} {label}" for label, n in (("treated", treated), ("control", control)) if n < WARN_BELOW_PER_ARM]
    if small:
        return [
            (
                f"Only {' and '.join(small)} rows: with fewer than about {WARN_BELOW_PER_ARM} rows per group the "
                "networks learn little and the estimate and its standard error are unreliable."
            )
        ]
    return []

"""The data an estimate reads: which file, and which vector each of its rows belongs to.

By default the data is the prompts file the export was made from: the manifest names it and records its sha256,
and it is looked for next to the export. When it is not found there, the export's own table (generated_texts.csv)
serves: it holds every column of that file, row by row. Another file must have one row per vector in the same
order (checked against the export's prompts when it holds the prompt column), or name an ID column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gpi_desktop.core.estimate.vectors import Vectors
from gpi_desktop.core.files.prompts import read_table
from gpi_desktop.core.output.provenance import file_sha256
from gpi_desktop.core.vocabulary.errors import EstimateInputError, Remedy

if TYPE_CHECKING:
    import pandas as pd

_LISTED = 5


@dataclass(frozen=True, eq=False)
class DataRows:
    """The data file as read (every cell as text) and, for each of its rows, the number of its vector."""

    path: Path
    sha256: str
    frame: pd.DataFrame
    vector_rows: np.ndarray  # int64, one per data row
    matched: str  # how the rows were matched to the vectors, in words


def default_data_path(vectors: Vectors, also_look_in: tuple[Path, ...] = ()) -> Path:
    """The prompts file the export was made from, found by name and checksum, else the export's own table."""
    source = vectors.source
    if vectors.kind != "gpi-desktop":
        raise EstimateInputError(
            f"'{vectors.folder}' holds gpi_pack's vector files, which do not say what data they were made from",
            remedy=Remedy.GIVE_DATA_FILE,
        )
    if source.prompts_file:
        for folder in (*also_look_in, vectors.folder, vectors.folder.parent):
            candidate = folder / source.prompts_file
            if candidate.is_file() and file_sha256(candidate) == source.prompts_sha256:
                return candidate
    table = vectors.folder / str(source.manifest.get("files", {}).get("texts_csv", "generated_texts.csv"))
    if table.is_file():
        return table
    raise EstimateInputError(
        f"The export was made from {source.prompts_file or 'a prompts file'}, which is not next "
        f"to it in '{vectors.folder}'",
        remedy=Remedy.GIVE_DATA_FILE,
    )


def read_data(path: Path, vectors: Vectors, id_column: str | None) -> DataRows:
    path = Path(path)
    if not path.is_file():
        raise EstimateInputError(
            f"The data file '{path}' does not exist: choose the CSV, TSV or Excel file with "
            "the treatment and the outcome."
        )
    frame, meta = read_table(path)
    if id_column:
        rows, matched = _by_id(frame, vectors, id_column, path.name)
    else:
        rows, matched = _in_order(frame, vectors, path, meta.sha256)
    return DataRows(path=path, sha256=meta.sha256, frame=frame, vector_rows=rows, matched=matched)


def _export_table(vectors: Vectors) -> pd.DataFrame | None:
    """The export's generated_texts.csv (prompt and every input column), or None for a gpi_pack folder."""
    if vectors.kind != "gpi-desktop":
        return None
    path = vectors.folder / str(vectors.source.manifest.get("files", {}).get("texts_csv", "generated_texts.csv"))
    if not path.is_file():
        return None
    frame, _ = read_table(path)
    return frame


def _in_order(frame: pd.DataFrame, vectors: Vectors, path: Path, sha256: str) -> tuple[np.ndarray, str]:
    if len(frame) != vectors.n:
        raise EstimateInputError(
            f"{path.name} has {len(frame)} data rows but the export has {vectors.n} vectors, so "
            "its rows cannot be paired in order",
            remedy=Remedy.MATCH_BY_ID,
        )
    rows = np.arange(vectors.n, dtype=np.int64)
    manifest_files = vectors.source.manifest.get("sha256", {})
    if sha256 == vectors.source.prompts_sha256 or sha256 in manifest_files.values():
        return rows, "the file the export was made from, row by row"
    column = vectors.source.prompt_column
    export = _export_table(vectors) if column and column in frame.columns else None
    if export is None or "prompt" not in export.columns:
        return rows, "row by row (same number of rows; the order could not be checked)"
    differ = np.flatnonzero(frame[column].to_numpy() != export["prompt"].to_numpy())
    if differ.size:
        shown = ", ".join(map(str, differ[:_LISTED]))
        raise EstimateInputError(
            f"The prompts in column '{column}' of {path.name} are not the export's prompts in "
            f"the same order (data rows {shown} differ; rows count from 0)",
            remedy=Remedy.MATCH_BY_ID,
        )
    return rows, f"row by row (its column '{column}' holds the export's prompts in order)"


def _vector_ids(vectors: Vectors, id_column: str) -> tuple[list[str], str]:
    export = _export_table(vectors)
    if export is not None:
        for name in (id_column, f"{id_column} (input)"):
            if name in export.columns:
                return [str(v).strip() for v in export[name]], f"the export's column '{id_column}'"
    return [str(k) for k in range(vectors.n)], "the vectors' numbers (k of hidden_<k>.pt)"


def _by_id(frame: pd.DataFrame, vectors: Vectors, id_column: str, name: str) -> tuple[np.ndarray, str]:
    if id_column not in frame.columns:
        raise EstimateInputError(
            f"{name} has no column '{id_column}' (it has {column_list(frame)}): give the ID column's "
            "name as its header row writes it."
        )
    ids = [str(v).strip() for v in frame[id_column]]
    vector_ids, against = _vector_ids(vectors, id_column)
    position: dict[str, int] = {}
    for k, value in enumerate(vector_ids):
        if value in position:
            raise EstimateInputError(f"The ID '{value}' appears twice in {against}: IDs must name one row each.")
        position[value] = k
    seen: dict[str, int] = {}
    for row, value in enumerate(ids):
        if value in seen:
            raise EstimateInputError(
                f"The ID '{value}' appears twice in column '{id_column}' of {name} (data rows "
                f"{seen[value]} and {row}): each vector can be paired with one row only."
            )
        seen[value] = row
    unknown = [v for v in ids if v not in position]
    if unknown:
        shown = ", ".join(f"'{v}'" for v in unknown[:_LISTED])
        raise EstimateInputError(
            f"{len(unknown)} IDs in column '{id_column}' of {name} ({shown}) match no vector by "
            f"{against}: check that the data and the export are of the same study."
        )
    return np.array([position[v] for v in ids], dtype=np.int64), f"by its column '{id_column}' against {against}"


def column_list(frame: pd.DataFrame) -> str:
    names = [f"'{c}'" for c in frame.columns]
    return ", ".join(names[:12]) + (", …" if len(names) > 12 else "")

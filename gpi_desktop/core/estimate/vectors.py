"""The vectors of an export folder: ours (manifest.json and hidden_states.npy) or gpi_pack's (hidden_<k>.pt files).

Row k of the matrix is data row k of the prompts file the export was made from; `keys` are the numbers k, which
a gpi_pack user's `load_hiddens(..., df.index)` also uses.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpi_desktop.core.output.export import HIDDEN_DIR, MANIFEST_NAME, MATRIX_NAME
from gpi_desktop.core.output.provenance import file_sha256, read_manifest
from gpi_desktop.core.vocabulary.errors import InputError
from gpi_desktop.core.vocabulary.progress import (
    Progress,
    ProgressKind,
    TaskState,
    check_cancel,
)

_PT_NAME = re.compile(r"^(?P<prefix>.*?)(?P<k>\d+)\.pt$")


@dataclass(frozen=True)
class ExportSource:
    """What the export says about where its rows came from (empty for a gpi_pack folder, which records nothing)."""

    prompts_file: str = ""  # the prompts file's name, as the manifest has it
    prompts_sha256: str = ""
    prompt_column: str = ""
    model: str = ""
    pooling: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Vectors:
    folder: Path
    matrix: np.ndarray  # float32 (N, H); row k is vector k
    kind: str  # "gpi-desktop" or "gpi_pack"
    sha256: str  # of the matrix's float32 bytes, the same for both kinds of folder
    manifest_sha256: str = ""  # of manifest.json, for our exports
    source: ExportSource = field(default_factory=ExportSource)

    @property
    def n(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def width(self) -> int:
        return int(self.matrix.shape[1])


def matrix_sha256(matrix: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(matrix, dtype=np.float32).tobytes()).hexdigest()


def load_vectors(folder: Path | str, state: TaskState) -> Vectors:
    """The export's vectors, or an InputError saying why the folder holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"'{folder}' is not a folder: give the export folder that holds the vectors.")
    if (folder / MANIFEST_NAME).is_file():
        return _our_export(folder)
    return _gpi_pack_folder(folder, state)


def _our_export(folder: Path) -> Vectors:
    manifest = read_manifest(folder)
    path = folder / MATRIX_NAME
    if not path.is_file():
        raise InputError(f"The export in '{folder}' has no {MATRIX_NAME}: export the run again.")
    expected = manifest.get("sha256", {}).get(MATRIX_NAME)
    if expected and file_sha256(path) != expected:
        raise InputError(
            f"{MATRIX_NAME} in '{folder}' is not the file the export wrote (its checksum differs): "
            "export the run again or copy the folder again."
        )
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"{MATRIX_NAME} in '{folder}' cannot be read ({error}): export the run again.") from None
    matrix = _checked(np.asarray(matrix, dtype=np.float32), folder)
    given = manifest.get("input", {})
    source = ExportSource(
        prompts_file=str(given.get("file", "")),
        prompts_sha256=str(given.get("sha256", "")),
        prompt_column=str(given.get("column", "")),
        model=str(manifest.get("model", {}).get("model_id", "")),
        pooling=str(manifest.get("settings", {}).get("pooling", "")),
        manifest=manifest,
    )
    return Vectors(
        folder=folder,
        matrix=matrix,
        kind="gpi-desktop",
        sha256=matrix_sha256(matrix),
        manifest_sha256=file_sha256(folder / MANIFEST_NAME),
        source=source,
    )


def pt_files(folder: Path) -> tuple[Path, dict[int, Path]]:
    """The folder that holds the hidden_<k>.pt files (the folder or its hidden/) and the files by k."""
    for where in (folder, folder / HIDDEN_DIR):
        found: dict[str, dict[int, Path]] = {}
        if not where.is_dir():
            continue
        for entry in where.iterdir():
            match = _PT_NAME.match(entry.name)
            if match and entry.is_file():
                found.setdefault(match["prefix"], {})[int(match["k"])] = entry
        if len(found) > 1:
            names = " and ".join(f"'{p}<k>.pt'" for p in sorted(found))
            raise InputError(
                f"'{where}' holds vectors of several names ({names}): keep one set of vector files per folder."
            )
        if found:
            return where, next(iter(found.values()))
    raise InputError(
        f"'{folder}' holds neither a GPI Desktop export (manifest.json) nor gpi_pack's vector files "
        "(hidden_<k>.pt): give the folder the export was written to."
    )


def _gpi_pack_folder(folder: Path, state: TaskState) -> Vectors:
    import torch

    where, files = pt_files(folder)
    missing = sorted(set(range(max(files) + 1)) - set(files))
    if missing:
        shown = ", ".join(str(k) for k in missing[:10]) + (" …" if len(missing) > 10 else "")
        raise InputError(
            f"'{where}' lacks the vector files of rows {shown} (the files are numbered from 0 without "
            "gaps, one per data row): save the vectors of every row again."
        )
    rows = []
    for k in range(len(files)):
        check_cancel(state)
        try:
            tensor = torch.load(files[k], map_location="cpu", weights_only=True)
        except Exception as error:  # a damaged or foreign file: torch raises many kinds
            raise InputError(
                f"{files[k].name} cannot be read as a vector ({type(error).__name__}): save the vectors again."
            ) from None
        rows.append(tensor.detach().float().reshape(-1).numpy())
        if k % 200 == 0:
            state.set_progress(
                Progress(k, len(files), message=f"Reading vectors: {k} of {len(files)}", kind=ProgressKind.STEPS)
            )
    widths = {r.shape[0] for r in rows}
    if len(widths) != 1:
        raise InputError(
            f"The vector files in '{where}' have different widths ({', '.join(map(str, sorted(widths)))}): "
            "they come from different models or settings; save them again with one model."
        )
    matrix = _checked(np.stack(rows).astype(np.float32), folder)
    return Vectors(folder=folder, matrix=matrix, kind="gpi_pack", sha256=matrix_sha256(matrix))


def _checked(matrix: np.ndarray, folder: Path) -> np.ndarray:
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise InputError(f"The vectors in '{folder}' are not one vector per row: export the run again.")
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if bad.size:
        raise InputError(
            f"The vectors of rows {', '.join(map(str, bad[:10]))} in '{folder}' hold NaN or infinite "
            "values: run those prompts again."
        )
    return matrix

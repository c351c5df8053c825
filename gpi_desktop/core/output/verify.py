"""The checks an export folder must pass: what the self-test and the GPU check assert of a finished run.

    for check in export_checks(folder, prompts, max_new_tokens=48):
        print("ok" if check.ok else "FAILED", check.what, check.detail)

Each check reads the files as a researcher's code does (numpy, pandas, and
torch.load for the .pt files as gpi_pack's load_hiddens does), so a check
that passes here means the export loads there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpi_desktop.core.output.export import HIDDEN_DIR, MANIFEST_NAME, MATRIX_NAME
from gpi_desktop.core.vocabulary.results import STOP_EOS, STOP_LENGTH

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class ExportCheck:
    what: str  # the property, in words
    ok: bool
    detail: str = ""  # what was found, where it matters when the check fails


def export_checks(
    folder: Path | str,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    hidden_size: int | None = None,
    texts: Sequence[str] | None = None,
    prefix: str = "hidden_",
    save_name: str = "generated_texts",
) -> list[ExportCheck]:
    """Every check of the export in `folder` of a run over `prompts` (in input order); `texts`: the run's own texts.

    `hidden_size` None takes the width from hidden_states.npy (the manifest must agree).
    """
    import numpy as np

    folder, n = Path(folder), len(prompts)
    matrix = np.load(folder / MATRIX_NAME)
    h = hidden_size if hidden_size is not None else (matrix.shape[1] if matrix.ndim == 2 else -1)
    checks = [
        ExportCheck(
            f"{MATRIX_NAME} is float32 ({n}, {h}) with finite numbers",
            matrix.shape == (n, h) and matrix.dtype == np.float32 and bool(np.isfinite(matrix).all()),
            f"{matrix.shape} {matrix.dtype}",
        )
    ]
    checks += _hidden_file_checks(folder / HIDDEN_DIR, matrix, n, h, prefix)
    checks += _text_checks(folder, prompts, texts, save_name, max_new_tokens)
    checks += _manifest_checks(folder, h, max_new_tokens)
    return checks


def _hidden_file_checks(hidden: Path, matrix: np.ndarray, n: int, h: int, prefix: str) -> list[ExportCheck]:
    import numpy as np
    import torch

    names = sorted(p.name for p in hidden.iterdir()) if hidden.is_dir() else []
    expected = sorted(f"{prefix}{k}.pt" for k in range(n))
    checks = [
        ExportCheck(f"{HIDDEN_DIR}/ holds {prefix}0.pt to {prefix}{n - 1}.pt", names == expected, f"{len(names)} files")
    ]
    same = names == expected and matrix.shape == (n, h)
    for k in range(n) if same else ():
        tensor = torch.load(hidden / f"{prefix}{k}.pt", weights_only=True)
        same &= tuple(tensor.shape) == (1, h) and tensor.dtype == torch.float32
        same &= bool(np.array_equal(tensor.numpy()[0], matrix[k]))
    checks.append(ExportCheck(f"each {prefix}<k>.pt is a float32 (1, H) tensor equal to row k of {MATRIX_NAME}", same))
    return checks


def _text_checks(
    folder: Path, prompts: Sequence[str], texts: Sequence[str] | None, save_name: str, max_new_tokens: int
) -> list[ExportCheck]:
    import pandas as pd

    n = len(prompts)
    frame = pd.read_pickle(folder / f"{save_name}.pkl")
    checks = [
        ExportCheck(
            f"{save_name}.pkl has columns X (generated) and P (prompt), row k = prompt k",
            list(frame.columns) == ["X", "P"]
            and frame["P"].tolist() == list(prompts)
            and (texts is None or frame["X"].tolist() == list(texts)),
        )
    ]
    raw = (folder / f"{save_name}.csv").read_bytes()
    table = pd.read_csv(folder / f"{save_name}.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    checks.append(
        ExportCheck(
            f"{save_name}.csv is UTF-8 with BOM, {n} rows, the same texts as the pickle",
            raw.startswith(b"\xef\xbb\xbf")
            and len(table) == n
            and table["generated text"].tolist() == frame["X"].tolist(),
            f"{len(table)} rows",
        )
    )
    tokens = [int(t) for t in table["tokens"]]
    stops = table["stop reason"].tolist()
    honoured = all(
        (s == STOP_EOS and 1 <= t <= max_new_tokens) or (s == STOP_LENGTH and t == max_new_tokens)
        for s, t in zip(stops, tokens)
    )
    checks.append(
        ExportCheck(
            f"each row stopped at its end of text or at exactly {max_new_tokens} tokens",
            honoured,
            f"{stops.count(STOP_EOS)} at the end of text, {stops.count(STOP_LENGTH)} at the limit",
        )
    )
    return checks


def _manifest_checks(folder: Path, h: int, max_new_tokens: int) -> list[ExportCheck]:
    manifest: dict[str, Any] = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    sums = manifest.get("sha256", {})
    files = sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME
    )
    return [
        ExportCheck(
            f"{MANIFEST_NAME} lists the sha256 of every exported file, and they match",
            sorted(sums) == files
            and all(
                hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest for name, digest in sums.items()
            ),
        ),
        ExportCheck(
            f"{MANIFEST_NAME} records the settings and the hidden size",
            manifest.get("settings", {}).get("max_new_tokens") == max_new_tokens and manifest.get("hidden_size") == h,
        ),
    ]

"""A journal key and results made up for the journal tests, and a journal filled with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpi_desktop.core.files.runstore import RunJournal
from gpi_desktop.core.vocabulary.results import STOP_EOS, STOP_LENGTH, PromptResult

H = 16
KEY = {
    "input_sha256": "ab" * 32,
    "n_rows": 50,
    "column": "text",
    "model": "tiny/llama",
    "settings": {"pooling": "mean", "max_new_tokens": 40, "task": "create"},
}


def result(row: int, width: int = H) -> PromptResult:
    rng = np.random.default_rng(row)
    return PromptResult(
        row=row,
        text=f"généré {row}\nwith a newline and “quotes” " * (row % 3),
        vector=rng.standard_normal(width).astype(np.float32),
        n_tokens=row % 7 + 1,
        stop_reason=STOP_LENGTH if row % 2 else STOP_EOS,
        pooled_from_step0=row % 5 == 0,
        prompt_tokens=10 + row,
    )


def journal_with(folder: Path, rows) -> None:
    with RunJournal.create(folder, KEY, hidden_size=H) as journal:
        for row in rows:
            journal.append(result(row))

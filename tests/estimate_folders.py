"""Export folders for the estimate's tests: ours (written by write_export) and gpi_pack's (hidden_<k>.pt files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from estimate_sim import Study

from gpi_desktop.core.files.prompts import load_prompt_table
from gpi_desktop.core.output.export import write_export
from gpi_desktop.core.vocabulary.results import STOP_EOS, PromptResult
from gpi_desktop.core.vocabulary.settings import ExportSettings


def study_table(study: Study) -> pd.DataFrame:
    n = study.t.size
    return pd.DataFrame(
        {
            "id": [f"doc{k:04d}" for k in range(n)],
            "prompt": [f"Write text number {k}." for k in range(n)],
            "group": np.where(study.t == 1, "short", "long"),
            "score": study.y,
            "region": np.where(np.arange(n) % 2 == 0, "north", "south"),
        }
    )


def write_our_export(study: Study, folder: Path, prompts: Path) -> Path:
    """The prompts file (`prompts`, with treatment 'group' and outcome 'score') and its export in `folder`."""
    study_table(study).to_csv(prompts, index=False)
    table = load_prompt_table(prompts, "prompt")
    results = [
        PromptResult(
            row=k,
            text=f"text {k}",
            vector=study.r[k],
            n_tokens=3,
            stop_reason=STOP_EOS,
            prompt_tokens=5,
            prompt_ids_sha256="0" * 64,
        )
        for k in range(study.t.size)
    ]
    fields = {
        "input": {"file": prompts.name, "sha256": table.sha256, "column": "prompt", "rows": len(table)},
        "model": {"model_id": "tiny-test-model"},
        "settings": {"pooling": "last"},
    }
    write_export(folder, results, table, ExportSettings(), fields)
    return folder


def write_gpi_pack_folder(study: Study, folder: Path) -> Path:
    import torch

    folder.mkdir(parents=True)
    for k in range(study.t.size):
        torch.save(torch.from_numpy(study.r[k]).reshape(1, -1), folder / f"hidden_{k}.pt")
    return folder

"""The report folder of an estimate (docs/estimator.md, "The report folder"):

    estimate.json     the numbers, the settings and seed, the versions, the export's and the data's sha256
    estimate.csv      the same numbers as one row, for a spreadsheet
    scores.csv        one row per data row used: fold, treatment, outcome, predictions, propensity, score
    propensity.png    the overlap plot; validation_loss.png: each fold's validation loss by epoch
    methods.txt       a paragraph for a paper's methods section and what to cite

Files are written atomically, estimate.json last: its presence means the report is complete.
"""

from __future__ import annotations

import csv
import io
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from gpi_desktop.core.estimate.pipeline import EstimateResult
from gpi_desktop.core.estimate.plots import loss_figure, png_bytes, propensity_figure
from gpi_desktop.core.estimate.scores import trim
from gpi_desktop.core.estimate.words import methods_paragraph
from gpi_desktop.core.files.fileio import make_folder, plain_os_errors, write_atomically
from gpi_desktop.core.vocabulary.errors import OutputFolderError, Remedy

REPORT_FORMAT = "gpi-desktop estimate 1"
SUMMARY_NAME = "estimate.json"
FILES = ("estimate.csv", "scores.csv", "propensity.png", "validation_loss.png", "methods.txt", SUMMARY_NAME)


def check_report_folder(folder: Path, overwrite: bool) -> None:
    """Refuses a folder that holds anything unless `overwrite` (then only the report's own files are replaced)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"'{folder}' is a file, not a folder: choose a folder for the report.")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        what = "an earlier report" if (folder / SUMMARY_NAME).is_file() else "other files"
        raise OutputFolderError(
            f"The folder '{folder}' already holds {what}", remedy=Remedy.EMPTY_REPORT_FOLDER_OR_REPLACE
        )


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    import gpi_desktop

    out = {"gpi_desktop": gpi_desktop.__version__, "python": platform.python_version()}
    for name in ("torch", "numpy", "pandas", "matplotlib"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:  # pragma: no cover - frozen builds may lack metadata
            out[name] = "unknown"
    return out


def summary_record(result: EstimateResult) -> dict[str, Any]:
    prepared, est, design = result.prepared, result.estimate, result.design
    request, vectors, data = prepared.request, prepared.vectors, prepared.data
    low, high = est.summary.ci95
    return {
        "format": REPORT_FORMAT,
        "ate": est.summary.ate,
        "se": est.summary.se,
        "ci95": [low, high],
        "n_used": design.n,
        "n_treated": design.arm_sizes[0],
        "n_control": design.arm_sizes[1],
        "n_left_out": design.left_out.rows,
        "left_out": {
            "no_treatment": design.left_out.treatment,
            "no_outcome": design.left_out.outcome,
            "confounder_missing": design.left_out.confounders,
            "no_cluster": design.left_out.cluster,
            "vectors_without_data_row": design.left_out.unmatched_vectors,
        },
        "se_kind": "clustered" if request.cluster else "rows independent",
        "n_clusters": est.summary.n_clusters,
        "trimmed_share": est.trimmed_share,
        "propensity_accuracy": est.ps_accuracy,
        "overlap": {"poor": result.overlap_poor, "words": result.overlap},
        "warnings": list(result.warnings),
        "treatment": {"column": request.treatment, "treated": design.treated_value, "control": design.control_value},
        "outcome": request.outcome,
        "confounders": {"columns": list(request.confounders), "coded_as": list(design.confounder_names)},
        "cluster": request.cluster,
        "seed": request.settings.seed,
        "settings": request.settings.to_dict(),
        "folds": [
            {
                "epochs_run": len(t.valid),
                "best_epoch": t.best_epoch + 1,
                "stopped_early": t.stopped_early,
                "best_validation_loss": t.valid[t.best_epoch] if t.best_epoch >= 0 else None,
                "validation_loss": t.valid,
                "training_loss": t.train,
            }
            for t in est.losses
        ],
        "vectors": {
            "folder": str(vectors.folder),
            "kind": vectors.kind,
            "rows": vectors.n,
            "width": vectors.width,
            "sha256": vectors.sha256,
            "manifest_sha256": vectors.manifest_sha256 or None,
            "model": vectors.source.model or None,
            "pooling": vectors.source.pooling or None,
        },
        "data": {
            "file": str(data.path),
            "sha256": data.sha256,
            "matched": data.matched,
            "id_column": request.id_column,
        },
        "versions": library_versions(),
        "estimator": "gpi_pack 0.2.1 estimate_k_ate, as written in GPI Desktop (docs/estimator.md)",
        "files": list(FILES),
    }


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def summary_csv(record: dict[str, Any]) -> bytes:
    keys = ["ate", "se", "n_used", "n_treated", "n_control", "n_left_out", "trimmed_share", "n_clusters", "seed"]
    return _csv(keys + ["ci95_low", "ci95_high"], [[record[k] for k in keys] + record["ci95"]])


def scores_csv(result: EstimateResult) -> bytes:
    design, est = result.design, result.estimate
    e = est.propensity
    trimmed = trim(e, result.request.settings.trim)
    rows = [
        [
            int(design.data_rows[i]),
            int(est.fold[i]) + 1,
            int(design.t[i]),
            float(design.y[i]),
            float(est.y0[i]),
            float(est.y1[i]),
            float(e[i]),
            float(trimmed[i]),
            float(est.scores[i]),
        ]
        + ([str(design.clusters[i])] if design.clusters is not None else [])
        for i in range(design.n)
    ]
    header = [
        "data row",
        "fold",
        "treated",
        "outcome",
        "predicted outcome if control",
        "predicted outcome if treated",
        "propensity",
        "propensity trimmed",
        "score",
    ] + (["cluster"] if design.clusters is not None else [])
    return _csv(header, rows)


def write_report(result: EstimateResult, folder: Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Writes the report folder; returns what estimate.json holds."""
    import gpi_desktop

    folder = Path(folder)
    check_report_folder(folder, overwrite)
    record = summary_record(result)
    settings = result.request.settings
    files = {
        "estimate.csv": summary_csv(record),
        "scores.csv": scores_csv(result),
        "propensity.png": png_bytes(propensity_figure(result.design, result.estimate, settings.trim)),
        "validation_loss.png": png_bytes(loss_figure(result.estimate.losses)),
        "methods.txt": methods_paragraph(
            result.request, result.prepared.vectors, result.design, result.estimate, gpi_desktop.__version__
        ).encode("utf-8"),
    }
    with plain_os_errors(
        "The disk is full while writing the report: free some space, then estimate again.",
        f"The report cannot be written to '{folder}' ({{reason}}): choose another folder.",
    ):
        make_folder(folder)
        (folder / SUMMARY_NAME).unlink(missing_ok=True)  # an earlier report stops being complete first
        for name, data in files.items():
            write_atomically(folder / name, data)
        text = json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False, default=_plain) + "\n"
        write_atomically(folder / SUMMARY_NAME, text.encode("utf-8"))
    return record


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)

"""The export step's decisions and words, kept free of widgets so that they are easy to test."""

from __future__ import annotations

import html
from pathlib import Path

from gpi_desktop.core.output.export import DEFAULT_ALLOWED_NAMES
from gpi_desktop.core.vocabulary.settings import ExportSettings
from gpi_desktop.ui.shared.formatting import settings_words


def folder_has_files(folder: Path) -> bool:
    """True when `folder` holds files the export would have to write beside (so it needs the user's yes).

    The names core's export ignores (.DS_Store, Thumbs.db, ...) do not count, as in `check_output_folder`.
    """
    try:
        return folder.is_dir() and any(p.name not in DEFAULT_ALLOWED_NAMES for p in folder.iterdir())
    except OSError:
        return False


def overwrite_question(folder: Path, export: ExportSettings) -> str:
    return (
        f"The folder {folder} already holds files.\n\n"
        f"Write the export into it anyway? Files with the export's names (the hidden folder, "
        f"{export.save_name}.pkl, {export.save_name}.csv, hidden_states.npy, manifest.json) will be replaced."
    )


def _py_path(path: Path) -> str:
    text = str(path)
    return f'r"{text}"' if '"' not in text and not text.endswith("\\") else repr(text)


def gpi_pack_snippet(folder: Path, export: ExportSettings) -> str:
    """Three lines of Python that load the export with gpi_pack."""
    texts = folder / f"{export.save_name}.pkl"
    return (
        "import pandas as pd, gpi_pack.TarNet as gpi\n"
        f"texts = pd.read_pickle({_py_path(texts)})  # columns X (generated) and P (prompt)\n"
        f"hidden = gpi.load_hiddens({_py_path(folder / 'hidden')}, texts.index.tolist(), prefix={export.prefix!r})"
    )


def exported_files_text(export: ExportSettings) -> str:
    """What the export folder will hold, in plain words."""
    return (
        f"hidden/{export.prefix}0.pt, {export.prefix}1.pt, \u2026 one vector per row (what gpi_pack's load_hiddens "
        f"reads); {export.save_name}.pkl and {export.save_name}.csv with the generated texts (the .csv opens in "
        "Excel); hidden_states.npy with all vectors in one array; manifest.json with how they were made."
    )


def made_with_html(outcome) -> str:
    """What a finished run (`core.job.job.RunOutcome`) was made with, as HTML lines for the export step."""
    lines = job_html(outcome.spec, outcome.table, len(outcome.results), outcome.model_info)
    template = getattr(outcome, "template", None)
    if template is not None:
        used = "the template writes it into every prompt" if template.date_used else "not used by this template"
        lines += f"<br><b>Template date:</b> {html.escape(template.date)} ({used})"
    return lines


def job_html(spec, table, rows: int, model_info=None) -> str:
    """A job's model, prompts and settings (`core.job.job.JobSpec`, `PromptTable`), as HTML lines.

    With `model_info` (the loaded model's `ModelInfo`, known once a run finished) the precision, device and
    vector length are named too.
    """
    if model_info is not None:
        info = model_info
        model = (
            f"{html.escape(info.model_id)} ({html.escape(info.dtype)} on {html.escape(info.device)}, "
            f"{info.hidden_size:,} numbers per vector)"
        )
    else:
        model = html.escape(str(spec.settings.model))
    lines = [
        f"<b>Model:</b> {model}",
        f"<b>Prompts:</b> {rows:,} rows of {html.escape(Path(table.path).name)}, column '{html.escape(table.column)}'",
        f"<b>Settings:</b> {html.escape(settings_words(spec.settings), quote=False)}",
    ]
    return "<br>".join(lines)


def stale_html(made_with: str, changes) -> str:
    """Why results on screen are not the current inputs' (`core.job.key_changes.KeyChange`s), and what to do."""
    changed = "; ".join(html.escape(c.words(), quote=False) for c in changes) or "the inputs are not complete"
    return (
        f"<b>These results do not match the current inputs, so they cannot be exported.</b> "
        f"They were made with:<br>{made_with}<br><b>Changed since:</b> {changed}.<br>"
        "Change these back to use the results again, or press Run to make results for the new inputs."
    )

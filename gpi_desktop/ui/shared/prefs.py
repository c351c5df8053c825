"""Settings and folders remembered between launches (QSettings).

A stored value that no longer makes sense (an older version, a hand edit) is
ignored and the gpi_pack default is used, so a bad preferences file can never
stop the window from opening.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings

from gpi_desktop.core.vocabulary.errors import SettingsError
from gpi_desktop.core.vocabulary.options import parse_options
from gpi_desktop.core.vocabulary.settings import ExportSettings, RunSettings

_RUN = "run/"
_EXPORT = "export/"
_FOLDERS = "folders/"
CUSTOM_INSTRUCTION_KEY = "run/custom_instruction"

# Stored as text, parsed back with the types RunSettings expects.
_INT_FIELDS = {"max_new_tokens"}
# allow_pickle_weights is a trust decision about one model, so it is never carried over to the next launch;
# a template date set to repeat one study must not silently date the next one.
_SKIP = {"template_options", "generation_options", "revision", "quantization", "allow_pickle_weights", "template_date"}
_NO_QUANTIZATION = "none"


def save_settings(qs: QSettings, run: RunSettings, export: ExportSettings) -> None:
    for f in fields(RunSettings):
        if f.name not in _SKIP:
            qs.setValue(_RUN + f.name, str(getattr(run, f.name)))
    qs.setValue(_RUN + "quantization", run.quantization or _NO_QUANTIZATION)
    qs.setValue(_RUN + "template_options", options_text(run.template_options))
    qs.setValue(_RUN + "generation_options", options_text(run.generation_options))
    for f in fields(ExportSettings):
        qs.setValue(_EXPORT + f.name, getattr(export, f.name))


def load_settings(qs: QSettings) -> tuple[RunSettings, ExportSettings]:
    run = RunSettings()
    for f in fields(RunSettings):
        if f.name in _SKIP or not qs.contains(_RUN + f.name):
            continue
        raw = str(qs.value(_RUN + f.name))
        value: Any = raw  # the field's own type is checked on the result (_valid), as for a hand-edited value
        if f.name in _INT_FIELDS or (f.name == "batch_size" and raw.isdigit()):
            try:
                value = int(raw)
            except ValueError:
                continue
        candidate = replace(run, **{f.name: value})
        if _valid(candidate):
            run = candidate
    stored = str(qs.value(_RUN + "quantization", _NO_QUANTIZATION))
    candidate = replace(run, quantization=None if stored == _NO_QUANTIZATION else stored)
    if _valid(candidate):
        run = candidate
    for key in ("template_options", "generation_options"):
        try:
            options = parse_options(str(qs.value(_RUN + key, "")).splitlines())
        except SettingsError:
            continue
        changes: dict[str, Any] = {key: options}  # either options field, by name
        candidate = replace(run, **changes)
        if _valid(candidate):
            run = candidate
    export = ExportSettings()
    for f in fields(ExportSettings):
        if qs.contains(_EXPORT + f.name):
            candidate_e = replace(export, **{f.name: str(qs.value(_EXPORT + f.name))})
            try:
                export = candidate_e.validate()
            except SettingsError:
                pass
    return run, export


def _valid(run: RunSettings) -> bool:
    try:
        run.validate()
    except SettingsError:
        return False
    return True


def options_text(options: dict) -> str:
    """KEY=VALUE lines, values as JSON, the form `parse_options` reads back."""
    return "\n".join(f"{k}={json.dumps(v)}" for k, v in options.items())


def last_folder(qs: QSettings, purpose: str, default: Path | None = None) -> str:
    """The folder last used for `purpose` ("prompts", "export", "model"), or `default` (the home folder)."""
    value = str(qs.value(_FOLDERS + purpose, ""))
    return value if value and Path(value).is_dir() else str(default or Path.home())


def remember_folder(qs: QSettings, purpose: str, folder: str | Path) -> None:
    qs.setValue(_FOLDERS + purpose, str(folder))

"""Where the bundled demo model, sample prompts and icons are, and where runs keep their journals."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QStandardPaths

ORGANIZATION = "GPI Desktop"
APPLICATION = "GPI Desktop"

DEMO_MODEL_DIRNAME = "demo-model"
SAMPLE_PROMPTS_FILENAME = "sample_prompts.csv"
ICON_FILENAME = "icon.png"


def resources_dir() -> Path:
    """The `resources/` folder: inside the bundle when frozen, next to the package in a checkout,
    or under <prefix>/share/gpi-desktop/resources for a pip install that ships them as data files.

    GPI_DESKTOP_RESOURCES overrides all, for installs that put the files elsewhere.
    """
    override = os.environ.get("GPI_DESKTOP_RESOURCES")
    if override:
        return Path(override)
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    checkout = Path(__file__).resolve().parents[3] / "resources"
    installed = Path(sys.prefix) / "share" / "gpi-desktop" / "resources"
    return installed if not checkout.is_dir() and installed.is_dir() else checkout


def demo_model_path() -> Path:
    return resources_dir() / DEMO_MODEL_DIRNAME


def sample_prompts_path() -> Path:
    return resources_dir() / SAMPLE_PROMPTS_FILENAME


def icon_path() -> Path:
    return resources_dir() / ICON_FILENAME


def is_demo_model(model: str) -> bool:
    """True when `model` names the bundled demo model's folder."""
    try:
        return Path(model).expanduser().resolve() == demo_model_path().resolve()
    except (OSError, ValueError):
        return False


def app_data_dir() -> Path:
    """The per-user data folder, where jobs are kept: one folder named for the program.

    ~/.local/share/GPI Desktop on Linux, %LOCALAPPDATA%\\GPI Desktop on Windows (the local one: run journals
    can hold gigabytes of vectors, which must not roam with a profile), ~/Library/Application Support/GPI Desktop
    on macOS.
    """
    return _generic_data_dir() / APPLICATION


def legacy_data_dirs() -> list[Path]:
    """Where older versions kept jobs: Qt's application folder, which names the program twice
    (organisation, then application)."""
    return [_generic_data_dir() / ORGANIZATION / APPLICATION]


def _generic_data_dir() -> Path:
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation))

"""Where the program's log goes, and the guard that keeps the token out of it."""

from __future__ import annotations

import logging
import os
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path


def log_dir() -> Path:
    override = os.environ.get("GPI_DESKTOP_LOG_DIR")
    if override:
        return Path(override)
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "gpi-desktop" / "logs"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Logs" / "gpi-desktop"
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "gpi-desktop"


def setup_logging(verbose: bool = False) -> Path | None:
    """Log to a rotating file (tracebacks of our bugs go there), never the token."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    path = None
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "gpi-desktop.log"
        handler = RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    except OSError:
        path = None  # a read-only home must not stop the program
    if verbose:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(stream)
    try:
        from gpi_desktop.core.secrets import install_token_redaction

        install_token_redaction()
    except ImportError:  # pragma: no cover - secrets is part of the package
        pass
    # transformers and huggingface_hub are chatty at INFO; their warnings are enough in our log.
    for name in ("transformers", "huggingface_hub", "urllib3", "filelock"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return path

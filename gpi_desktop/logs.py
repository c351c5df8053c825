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


# The log may quote requests and errors: only its owner may read it (POSIX; on Windows the
# user's own AppData folder already is private).
_FILE_MODE = 0o600
_DIR_MODE = 0o700


class OwnerOnlyFileHandler(RotatingFileHandler):
    """A rotating log whose every file, the first and each one after a rollover, is readable by its owner only."""

    def _open(self):
        def opener(path, flags):
            return os.open(path, flags, _FILE_MODE)

        # The handler owns the stream it returns and closes it itself: no context manager here.
        stream = open(  # noqa: SIM115
            self.baseFilename,
            self.mode,
            encoding=self.encoding,
            errors=self.errors,
            opener=opener,
        )
        _owner_only(Path(self.baseFilename), _FILE_MODE)  # an older log, made before this rule
        return stream

    def handleError(self, record: logging.LogRecord) -> None:
        """Drop a record the log cannot take (a full disk, a removed folder): the user never sees a traceback.

        logging's default prints "--- Logging error ---" and a traceback to stderr,
        in front of the one plain sentence the user should see.
        """


def _owner_only(path: Path, mode: int) -> None:
    if os.name == "posix":
        try:
            os.chmod(path, mode)
        except OSError:
            pass  # a log folder we do not own (an administrator's choice) stays as it is


def setup_logging(verbose: bool = False) -> Path | None:
    """Log to a rotating file (tracebacks of our bugs go there), never the token."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    path = None
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        if not os.environ.get("GPI_DESKTOP_LOG_DIR"):
            _owner_only(folder, _DIR_MODE)  # our own folder; a chosen one (a cluster job's) keeps its rights
        path = folder / "gpi-desktop.log"
        for older in folder.glob("gpi-desktop.log.*"):  # rotated before logs were owner-only
            _owner_only(older, _FILE_MODE)
        handler = OwnerOnlyFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    except OSError:
        path = None  # a read-only home must not stop the program
    if verbose:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(stream)
    try:
        from gpi_desktop.core.hub.secrets import install_token_redaction

        install_token_redaction()
    except ImportError:  # pragma: no cover - secrets is part of the package
        pass
    # transformers and huggingface_hub are chatty at INFO; their warnings are enough in our log.
    for name in ("transformers", "huggingface_hub", "urllib3", "filelock"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return path

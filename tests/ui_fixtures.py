"""Fixtures shared by the window tests (tests/test_ui_*.py import them)."""

from __future__ import annotations

import keyring
import pytest
from test_secrets import MemoryKeyring  # the core tests' in-memory stand-in for the OS keyring


@pytest.fixture
def memory_keyring(monkeypatch):
    """The in-memory keyring as the OS keyring; no token in the environment or a hub login."""
    from gpi_desktop.core.hub import secrets

    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(secrets, "_from_hf_login", lambda: None)
    secrets.forget_session_token()
    yield backend
    secrets.forget_session_token()
    keyring.set_keyring(previous)


@pytest.fixture
def make_window(qtbot, tmp_path, memory_keyring):
    """Build real main windows with their own settings file, data folder and scripted answers."""
    from PySide6.QtCore import QSettings

    from gpi_desktop.ui.main_window import MainWindow
    from gpi_desktop.ui.shared.prompter import ScriptedPrompter

    windows = []

    def make(answers: dict[str, str] | None = None, settings_file: str = "prefs.ini", data_dir: str = "data",
             **kwargs):
        settings = QSettings(str(tmp_path / settings_file), QSettings.Format.IniFormat)
        window = MainWindow(settings, data_dir=tmp_path / data_dir, prompter=ScriptedPrompter(dict(answers or {})),
                            **kwargs)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        # Never leave a worker running into the next test.
        window.runner.cancel()
        qtbot.waitUntil(lambda w=window: not w.runner.is_busy(), timeout=60_000)
        qtbot.waitUntil(lambda w=window: w.calls.pending == 0, timeout=60_000)
        window.close()
        window.runner.shutdown()
        window.deleteLater()


def wait_idle(qtbot, window, timeout=60_000):
    """Until no background call (file read, keyring, model check) is out or about to start."""
    qtbot.waitUntil(lambda: window.calls.pending == 0 and not window.model_panel.is_checking(), timeout=timeout)

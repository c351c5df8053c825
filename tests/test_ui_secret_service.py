"""The window's token step against a real Secret Service (gnome-keyring), as on a Linux desktop.

Runs only where one is set up (GPI_TEST_SECRET_SERVICE=1), as tests/test_secret_service.py explains:

    dbus-run-session -- sh -c 'echo -n pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null; \\
        GPI_TEST_SECRET_SERVICE=1 python -m pytest -m secret_service tests/test_ui_secret_service.py'
"""

from __future__ import annotations

import os

import pytest

pytestmark = [
    pytest.mark.secret_service,
    pytest.mark.skipif(
        os.environ.get("GPI_TEST_SECRET_SERVICE") != "1",
        reason="needs a running Secret Service (set GPI_TEST_SECRET_SERVICE=1 under dbus-run-session)",
    ),
]

TOKEN = "hf_" + "WiNdOwSeCrEt" * 2 + "87654321"


def test_the_token_step_saves_to_and_removes_from_the_secret_service(qtbot, monkeypatch, tmp_path):
    import keyring
    from huggingface_hub import constants
    from keyring.backends import SecretService

    from gpi_desktop.core.hub import secrets
    from gpi_desktop.ui.shared.tasks import BackgroundCalls
    from gpi_desktop.ui.steps.token_step import TokenPanel

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    previous = keyring.get_keyring()
    keyring.set_keyring(SecretService.Keyring())
    secrets.forget_session_token()
    try:
        calls = BackgroundCalls()
        panel = TokenPanel(calls)
        qtbot.addWidget(panel)
        panel.field.setText(TOKEN)
        panel.save()
        qtbot.waitUntil(lambda: calls.pending == 0, timeout=30_000)
        assert panel.status_label.text() == "\u2714 Token: saved in Secret Service (GNOME Keyring / KWallet)."
        assert keyring.get_password(secrets.SERVICE, secrets.USERNAME) == TOKEN
        assert panel.keyring_note.isHidden()
        panel.remove()
        qtbot.waitUntil(lambda: calls.pending == 0, timeout=30_000)
        assert keyring.get_password(secrets.SERVICE, secrets.USERNAME) is None
        assert panel.status_label.text().startswith("Token: no token.")
    finally:
        keyring.set_keyring(previous)
        secrets.forget_session_token()

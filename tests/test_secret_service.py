"""The token in a real Secret Service (gnome-keyring), as on a Linux desktop.

Runs only where one is set up (GPI_TEST_SECRET_SERVICE=1), e.g.:

    dbus-run-session -- sh -c 'echo -n pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null; \
        GPI_TEST_SECRET_SERVICE=1 python -m pytest -m secret_service tests/test_secret_service.py'
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.secret_service,
    pytest.mark.skipif(
        os.environ.get("GPI_TEST_SECRET_SERVICE") != "1",
        reason="needs a running Secret Service (set GPI_TEST_SECRET_SERVICE=1 under dbus-run-session)",
    ),
]

TOKEN = "hf_" + "SeCrEtSeRvIcE" * 2 + "12345678"


@pytest.fixture
def secret_service(monkeypatch, tmp_path):
    import keyring
    from huggingface_hub import constants
    from keyring.backends import SecretService

    from gpi_desktop.core.hub import secrets

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    original = keyring.get_keyring()
    backend = SecretService.Keyring()
    keyring.set_keyring(backend)
    secrets.forget_session_token()
    yield backend
    try:
        secrets.clear_token()
    finally:
        keyring.set_keyring(original)


def test_token_round_trips_through_the_secret_service(secret_service):
    from gpi_desktop.core.hub import secrets

    assert secrets.keyring_backend_available()
    assert secrets.backend_name() == "Secret Service (GNOME Keyring / KWallet)"
    assert secrets.save_token(TOKEN).source == "keyring"
    found = secrets.find_token()
    assert (found.token, found.source) == (TOKEN, "keyring")
    assert found.describe() == "saved in Secret Service (GNOME Keyring / KWallet)"
    assert secrets.clear_token().source == "none"


def test_token_saved_by_the_cli_is_read_by_another_process(secret_service, tmp_path):
    env = {**os.environ, "HF_TOKEN_PATH": str(tmp_path / "token")}
    env.pop("HF_TOKEN", None)
    saved = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from gpi_desktop.cli.token import run_token;"
            "import argparse; sys.exit(run_token(argparse.Namespace(token_action='set', check=False)))",
        ],
        input=TOKEN + "\n",
        text=True,
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert saved.returncode == 0, saved.stderr
    assert "Secret Service" in saved.stdout and TOKEN not in saved.stdout + saved.stderr
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            "from gpi_desktop.core.hub.secrets import find_token;"
            "t = find_token(); print(t.source, t.token == " + repr(TOKEN) + ")",
        ],
        text=True,
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert read.stdout.split() == ["keyring", "True"], read.stderr

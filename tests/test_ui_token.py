"""Step 1: saving and removing the Hugging Face token through the window (in-memory keyring)."""

from __future__ import annotations

import logging

import keyring
import pytest
from keyring.backends import fail
from window_helpers import wait_idle

from gpi_desktop.core.hub import secrets
from gpi_desktop.ui.shared.tasks import BackgroundCalls
from gpi_desktop.ui.steps.token_step import TokenPanel

TOKEN = "hf_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7"


@pytest.fixture
def panel(qtbot, memory_keyring):
    calls = BackgroundCalls()
    p = TokenPanel(calls)
    qtbot.addWidget(p)
    p.refresh()
    qtbot.waitUntil(lambda: calls.pending == 0, timeout=10_000)
    return p, calls


def _finish(qtbot, calls):
    qtbot.waitUntil(lambda: calls.pending == 0, timeout=10_000)


def test_save_puts_the_token_in_the_keyring_and_clears_the_field(qtbot, panel, memory_keyring):
    p, calls = panel
    assert p.status_label.text().startswith("Token: no token.")
    assert not p.remove_button.isEnabled()
    p.field.setText(TOKEN)
    with qtbot.waitSignal(p.token_changed, timeout=10_000):
        p.save_button.click()
    _finish(qtbot, calls)
    assert memory_keyring.store[(secrets.SERVICE, secrets.USERNAME)] == TOKEN
    assert p.field.text() == ""
    assert p.status_label.text().startswith("\u2714 Token: saved in")
    assert p.remove_button.isEnabled()
    assert TOKEN not in p.status_label.text()


def test_remove_deletes_the_saved_token(qtbot, panel, memory_keyring):
    p, calls = panel
    memory_keyring.set_password(secrets.SERVICE, secrets.USERNAME, TOKEN)
    p.refresh()
    _finish(qtbot, calls)
    assert "saved in" in p.status_label.text()
    with qtbot.waitSignal(p.token_changed, timeout=10_000):
        p.remove_button.click()
    _finish(qtbot, calls)
    assert memory_keyring.store == {}
    assert p.status_label.text().startswith("Token: no token.")


def test_remove_says_when_a_token_from_the_environment_is_still_used(qtbot, panel, memory_keyring, monkeypatch):
    p, calls = panel
    memory_keyring.set_password(secrets.SERVICE, secrets.USERNAME, TOKEN)
    monkeypatch.setenv("HF_TOKEN", "hf_" + "z" * 34)
    p.remove()
    _finish(qtbot, calls)
    assert "using HF_TOKEN from the environment" in p.status_label.text()
    assert "set up outside the program" in p.status_label.text()


def test_an_empty_field_is_refused_in_plain_words(qtbot, panel, memory_keyring):
    p, calls = panel
    p.save_button.click()
    _finish(qtbot, calls)
    assert not p.error_label.isHidden()
    assert "Paste a token" in p.error_label.text()
    assert memory_keyring.store == {}


def test_without_a_keyring_the_token_is_kept_for_the_session_only(qtbot, memory_keyring, tmp_path):
    keyring.set_keyring(fail.Keyring())
    calls = BackgroundCalls()
    p = TokenPanel(calls)
    qtbot.addWidget(p)
    p.refresh()
    _finish(qtbot, calls)
    assert not p.keyring_note.isHidden()
    assert "kept only until you close the window" in p.keyring_note.text()
    p.field.setText(TOKEN)
    p.save()
    _finish(qtbot, calls)
    assert p.status_label.text() == "\u2714 Token: kept for this session only."
    assert secrets.find_token().token == TOKEN
    p.remove()
    _finish(qtbot, calls)
    assert secrets.find_token().source == "none"


def test_the_token_never_reaches_the_log_or_the_labels(qtbot, panel, caplog):
    p, calls = panel
    caplog.set_level(logging.DEBUG)
    p.field.setText(TOKEN)
    p.save()
    _finish(qtbot, calls)
    shown = " ".join(w.text() for w in (p.status_label, p.error_label, p.keyring_note))
    assert TOKEN not in shown
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(p.info)


def test_the_window_shows_the_token_status_at_start(qtbot, make_window, memory_keyring):
    memory_keyring.set_password(secrets.SERVICE, secrets.USERNAME, TOKEN)
    window = make_window()
    wait_idle(qtbot, window)
    assert "saved in" in window.token_panel.status_label.text()
    assert window.steps.item(0).text().endswith("\u2714")

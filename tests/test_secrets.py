"""The HF token: keyring, session-only fallback, lookup order, redaction, and `gpi-desktop token`."""

from __future__ import annotations

import argparse
import io
import logging
import os
import stat

import keyring
import pytest
from fakes import MemoryKeyring
from keyring.backends import fail

from gpi_desktop.cli import token as cli_token
from gpi_desktop.core.hub import secrets
from gpi_desktop.core.vocabulary.errors import AccessError, KeyringUnavailableError

TOKEN = "hf_" + "Qw3rTy" * 5 + "abcd"
OTHER = "hf_" + "Zx9" * 10 + "mnop"


class LockedKeyring(MemoryKeyring):
    def get_password(self, service, username):
        from keyring.errors import KeyringLocked

        raise KeyringLocked("locked")

    def set_password(self, service, username, password):
        self.get_password(service, username)


@pytest.fixture(autouse=True)
def clean_sources(monkeypatch, tmp_path):
    """No HF_TOKEN, no huggingface_hub login, no session token; the keyring is restored afterwards."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))  # the default login place, empty
    monkeypatch.delenv("HF_TOKEN_PATH", raising=False)
    original = keyring.get_keyring()
    secrets.forget_session_token()
    yield
    secrets.forget_session_token()
    keyring.set_keyring(original)


@pytest.fixture
def memory_keyring() -> MemoryKeyring:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend


@pytest.fixture
def no_keyring() -> None:
    keyring.set_keyring(fail.Keyring())


def _hf_login(tmp_path, token: str) -> None:
    path = tmp_path / "hf-home" / "token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")


# --- lookup and saving -----------------------------------------------------------------------------


def test_saved_token_is_found_in_the_keyring_under_the_program_name(memory_keyring):
    info = secrets.save_token("  " + TOKEN + "\n")
    assert info.source == "keyring"
    assert memory_keyring.store == {("gpi-desktop", "huggingface"): TOKEN}
    found = secrets.find_token()
    assert (found.token, found.source) == (TOKEN, "keyring")
    assert found.describe() == "saved in the MemoryKeyring keyring"


def test_token_never_shows_in_repr_or_str(memory_keyring):
    info = secrets.save_token(TOKEN)
    assert TOKEN not in repr(info) and TOKEN not in str(info)


@pytest.mark.parametrize(
    "module, name",
    [
        ("keyring.backends.Windows", "Windows Credential Manager"),
        ("keyring.backends.macOS", "macOS Keychain"),
        ("keyring.backends.SecretService", "Secret Service (GNOME Keyring / KWallet)"),
        ("keyring.backends.libsecret", "Secret Service (GNOME Keyring / KWallet)"),
    ],
)
def test_status_line_names_the_operating_system_keyring(module, name):
    cls = type("Keyring", (MemoryKeyring,), {"__module__": module})
    keyring.set_keyring(cls())
    secrets.save_token(TOKEN)
    assert secrets.backend_name() == name
    assert secrets.find_token().describe() == f"saved in {name}"


def test_lookup_order_is_keyring_then_session_then_environment_then_login(memory_keyring, monkeypatch, tmp_path):
    _hf_login(tmp_path, "hf_" + "L" * 30)
    assert secrets.find_token().source == "huggingface-login"
    assert secrets.find_token().describe() == "using your huggingface-cli login"
    monkeypatch.setenv("HF_TOKEN", OTHER)
    assert (secrets.find_token().token, secrets.find_token().source) == (OTHER, "environment")
    assert secrets.find_token().describe() == "using HF_TOKEN from the environment"
    secrets.save_token(TOKEN, session_only=True)
    assert secrets.find_token().source == "session"
    assert memory_keyring.store == {}  # session-only never touches the keyring
    secrets.save_token(TOKEN)
    assert secrets.find_token().source == "keyring"


def test_a_login_made_without_hf_home_is_found_when_hf_home_points_to_a_scratch_cache(
    no_keyring, tmp_path, monkeypatch
):
    # `hf auth login` first, `export HF_HOME=/scratch/...` later: the login is in ~/.cache/huggingface/token.
    default = tmp_path / "xdg-cache" / "huggingface" / "token"
    default.parent.mkdir(parents=True)
    default.write_text(TOKEN + "\n")
    info = secrets.find_token()
    assert (info.token, info.source) == (TOKEN, "huggingface-login")
    _hf_login(tmp_path, OTHER)  # a login under HF_HOME itself wins: it is where `hf download` looks too
    assert secrets.find_token().token == OTHER
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "elsewhere"))  # an explicit token file: only that one
    assert secrets.login_token_paths() == [tmp_path / "hf-home" / "token"]


def test_login_token_is_not_confused_with_the_environment_variable(monkeypatch, no_keyring):
    # huggingface_hub.get_token() returns HF_TOKEN first; without a login file there is no "login" token.
    monkeypatch.setenv("HF_TOKEN", OTHER)
    assert secrets.find_token().source == "environment"
    monkeypatch.delenv("HF_TOKEN")
    assert secrets.find_token() == secrets.TokenInfo(None, "none")
    assert secrets.find_token().describe() == "no token"


def test_clear_removes_the_saved_token_and_says_what_is_still_used(memory_keyring, monkeypatch):
    secrets.save_token(TOKEN)
    monkeypatch.setenv("HF_TOKEN", OTHER)
    remaining = secrets.clear_token()
    assert memory_keyring.store == {}
    assert remaining.source == "environment"
    monkeypatch.delenv("HF_TOKEN")
    assert secrets.clear_token().source == "none"  # clearing twice is fine


def test_without_a_keyring_saving_is_refused_in_plain_words(no_keyring, tmp_path):
    assert not secrets.keyring_backend_available()
    assert "no keyring" in secrets.backend_name()
    with pytest.raises(KeyringUnavailableError) as info:
        secrets.save_token(TOKEN)
    assert "keyring" in str(info.value) and TOKEN not in str(info.value)


def test_without_a_keyring_the_window_keeps_the_token_for_the_session_only(no_keyring, tmp_path):
    info = secrets.save_token(TOKEN, allow_session_fallback=True)
    assert info.source == "session" and info.describe() == "kept for this session only"
    assert secrets.find_token().token == TOKEN
    assert not (tmp_path / "hf-home").exists()  # nothing written anywhere
    secrets.clear_token()
    assert secrets.find_token().source == "none"


def test_plaintext_file_keyrings_do_not_count_as_a_keyring():
    cls = type("PlaintextKeyring", (MemoryKeyring,), {"__module__": "keyrings.alt.file"})
    keyring.set_keyring(cls())
    assert not secrets.keyring_backend_available()


def test_locked_keyring_is_a_plain_error_when_saving_and_skipped_when_reading(monkeypatch):
    keyring.set_keyring(LockedKeyring())
    with pytest.raises(KeyringUnavailableError, match="locked"):
        secrets.save_token(TOKEN)
    monkeypatch.setenv("HF_TOKEN", OTHER)
    assert secrets.find_token().source == "environment"


def test_empty_or_mangled_token_is_refused(memory_keyring):
    with pytest.raises(AccessError):
        secrets.save_token("   ")
    with pytest.raises(AccessError, match="spaces"):
        secrets.save_token("hf_abc def")
    assert memory_keyring.store == {}


# --- keeping the token out of logs ------------------------------------------------------------------


def test_log_records_never_carry_a_token(memory_keyring):
    secrets.install_token_redaction()
    odd = "not-shaped-like-hf-token-123"
    secrets.save_token(odd, session_only=True)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        log = logging.getLogger("gpi_desktop.some.module")
        log.info("Authorization: Bearer %s", TOKEN)
        log.warning("token=%s and %s", odd, "hf_shortword")
        try:
            raise RuntimeError(f"request failed with {TOKEN}")
        except RuntimeError:
            log.exception("download failed")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = stream.getvalue()
    assert TOKEN not in text and odd not in text
    assert text.count("hf_***") >= 3
    assert "hf_shortword" in text  # words that merely start with hf_ are left alone
    assert "RuntimeError" in text


def test_redact_replaces_every_token_shape():
    assert secrets.redact(f"a {TOKEN} b {OTHER}") == "a hf_*** b hf_***"


# --- validate against the Hub ----------------------------------------------------------------------


def test_validate_token_asks_the_hub_and_reports_a_refused_token_plainly(monkeypatch, tmp_path):
    from hubserver import FakeHub, point_client_at

    with FakeHub() as hub:
        point_client_at(monkeypatch, hub.url, tmp_path / "hf-home")
        hub.valid_tokens.add(TOKEN)
        assert secrets.validate_token(TOKEN) == "researcher"
        with pytest.raises(AccessError) as info:
            secrets.validate_token(OTHER)
    assert info.value.kind == "invalid-token" and OTHER not in str(info.value)


# --- gpi-desktop token ------------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gpi-desktop")
    commands = parser.add_subparsers(dest="command")
    cli_token.add_token_parser(commands)
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_set_reads_stdin_and_status_never_prints_the_token(memory_keyring, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))
    assert _run(["token", "set"]) == 0
    assert memory_keyring.store[("gpi-desktop", "huggingface")] == TOKEN
    assert _run(["token", "status"]) == 0
    out = capsys.readouterr()
    assert "saved in the MemoryKeyring keyring" in out.out
    assert TOKEN not in out.out + out.err
    assert _run(["token", "clear"]) == 0
    assert memory_keyring.store == {}
    assert _run(["token", "status"]) == 0
    assert "no token" in capsys.readouterr().out


def test_cli_set_uses_a_hidden_prompt_at_a_terminal(memory_keyring, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Tty(""))
    asked = []
    monkeypatch.setattr(cli_token.getpass, "getpass", lambda prompt: asked.append(prompt) or TOKEN)
    assert _run(["token", "set"]) == 0
    assert asked and memory_keyring.store[("gpi-desktop", "huggingface")] == TOKEN


def test_cli_without_a_keyring_status_says_so_and_set_refuses_with_exit_2(no_keyring, monkeypatch, capsys):
    assert _run(["token", "status"]) == 0
    assert "Keyring: none" in capsys.readouterr().out
    stdin = io.StringIO(TOKEN + "\n")
    monkeypatch.setattr("sys.stdin", stdin)
    assert _run(["token", "set"]) == 2
    err = capsys.readouterr().err
    assert "no password store" in err and TOKEN not in err and "Traceback" not in err
    assert stdin.tell() == 0  # refused before reading the token


def test_cli_set_of_an_empty_token_exits_2(memory_keyring, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert _run(["token", "set"]) == 2
    assert "empty" in capsys.readouterr().err
    assert memory_keyring.store == {}


# --- a malformed token (a line break, a space) from wherever it comes ----------------------------------

# The two halves are each long enough to be a secret on their own; neither may reach the log.
HALF_1, HALF_2 = "hf_" + "Ab1Cd2Ef3G" * 3, "Hi4Jk5Lm6N" * 2


def _cli_run_against_the_hub(tmp_path, tiny_llama, prompts_csv, fake_hub, monkeypatch) -> tuple[int, str]:
    from hubserver import repo_from_folder

    from gpi_desktop.cli import main

    fake_hub.add(repo_from_folder("tiny-org/tiny-llama", tiny_llama))
    logs = tmp_path / "logs"
    monkeypatch.setenv("GPI_DESKTOP_LOG_DIR", str(logs))
    code = main(
        [
            "run",
            "--model",
            "tiny-org/tiny-llama",
            "--prompts",
            str(prompts_csv),
            "--out",
            str(tmp_path / "out"),
            "--max-new-tokens",
            "4",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    return code, "".join(p.read_text(encoding="utf-8") for p in logs.glob("*.log*"))


@pytest.mark.parametrize("source", ["environment", "token-file", "keyring"])
def test_a_token_with_a_line_break_is_refused_in_plain_words_and_never_logged(
    source, fake_hub, tiny_llama, prompts_csv, tmp_path, monkeypatch, capsys, memory_keyring
):
    from huggingface_hub import constants

    token = f"{HALF_1}\n{HALF_2}"
    if source == "environment":
        monkeypatch.setenv("HF_TOKEN", token)
    elif source == "token-file":  # a two-line $HF_HOME/token
        path = tmp_path / "hf-home" / "token"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(token + "\n")
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(path))
    else:
        memory_keyring.store[(secrets.SERVICE, secrets.USERNAME)] = token
    code, log_text = _cli_run_against_the_hub(tmp_path, tiny_llama, prompts_csv, fake_hub, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "line break" in err and "Traceback" not in err
    for shown in (err, log_text):
        assert HALF_1 not in shown and HALF_2 not in shown
        assert HALF_1[:12] not in shown and HALF_2[:12] not in shown
    assert not (tmp_path / "out").exists()


def test_every_form_of_a_known_token_is_redacted():
    from urllib.parse import quote, quote_plus

    token = f"{HALF_1}\n{HALF_2} +/"
    secrets._remember(token)
    forms = [
        token,
        repr(token),
        repr(token.encode()),
        quote(token),
        quote_plus(token),
        quote(token, safe=""),
        HALF_1 + "\r\n" + HALF_2,
        f"Bearer {HALF_1}\\n{HALF_2}",
    ]
    for form in forms:
        clean = secrets.redact(f"header b'{form}' end")
        assert HALF_1 not in clean and HALF_2 not in clean, (form, clean)
        assert "hf_***" in clean


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX; Windows keeps AppData private per user")
def test_log_files_are_readable_by_their_owner_only_also_after_a_rollover(tmp_path, monkeypatch):
    from gpi_desktop import logs

    home = tmp_path / "state"
    monkeypatch.delenv("GPI_DESKTOP_LOG_DIR", raising=False)
    monkeypatch.setattr(logs.sys, "platform", "linux")
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    folder = home / "gpi-desktop"
    folder.mkdir(parents=True, mode=0o755)
    (folder / "gpi-desktop.log").write_text("from an older version\n")
    os.chmod(folder / "gpi-desktop.log", 0o644)
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        path = logs.setup_logging()
        handler = next(h for h in root.handlers if h not in before)
        logging.getLogger("gpi_desktop.test").warning("a line")
        handler.doRollover()
        logging.getLogger("gpi_desktop.test").warning("another line")
    finally:
        for h in root.handlers[:]:
            if h not in before:
                root.removeHandler(h)
                h.close()
    assert path == folder / "gpi-desktop.log"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = sorted(folder.iterdir())
    assert len(files) == 2
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file

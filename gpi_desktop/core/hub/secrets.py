"""The Hugging Face token: where it is kept, where it is found, and keeping it out of logs.

The token is saved only in the operating system's keyring (Windows Credential
Manager, macOS Keychain, Secret Service on Linux) through `keyring`. Where the
machine has no keyring, it can be kept in this process's memory for the
session and nowhere else: no file, no log, no error message, no manifest.

Keyring calls can block (a locked Secret Service shows an unlock prompt), so
the window must call these functions from a worker thread.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpi_desktop.core.vocabulary.errors import AccessError, GpiError, KeyringUnavailableError, Remedy

log = logging.getLogger(__name__)

SERVICE = "gpi-desktop"
USERNAME = "huggingface"
TOKENS_PAGE = "https://huggingface.co/settings/tokens"

SOURCES = ("keyring", "session", "environment", "huggingface-login", "none")

# Real tokens are "hf_" followed by 34 letters and digits; 20+ catches them and
# look-alikes without touching words such as "hf_home". The one pattern for the log's
# redaction and the export's last guard.
TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{20,}")
REDACTED = "hf_***"
# A piece of a known token shorter than this (one line of a token split across lines) is not
# redacted on its own: it would blank out ordinary words.
_MIN_PIECE = 8

_lock = threading.Lock()
_session_token: str | None = None
# Every form (see token_forms) of every token this process has seen, longest first, so that
# one not shaped like "hf_..." is still redacted from the log.
_known_forms: list[str] = []


@dataclass(frozen=True)
class TokenInfo:
    """A token and where it came from; repr never shows the token."""

    token: str | None = field(repr=False)
    source: str  # one of SOURCES

    def __bool__(self) -> bool:
        return bool(self.token)

    def describe(self) -> str:
        """The plain status line the window and `gpi-desktop token status` show."""
        if self.source == "keyring":
            return f"saved in {backend_name()}"
        if self.source == "environment":
            return "using HF_TOKEN from the environment"
        if self.source == "huggingface-login":
            return "using your huggingface-cli login"
        if self.source == "session":
            return "kept for this session only"
        return "no token"


# --- keyring backend ---------------------------------------------------------------------------

_BACKEND_NAMES = {
    "keyring.backends.Windows": "Windows Credential Manager",
    "keyring.backends.macOS": "macOS Keychain",
    "keyring.backends.SecretService": "Secret Service (GNOME Keyring / KWallet)",
    "keyring.backends.libsecret": "Secret Service (GNOME Keyring / KWallet)",
    "keyring.backends.kwallet": "KWallet",
}


def _active_backends() -> list[Any]:
    """The usable backends behind `keyring.get_keyring()` (the chainer's members, or the one)."""
    import keyring
    from keyring.backends import chainer, fail, null

    kr = keyring.get_keyring()
    members = list(kr.backends) if isinstance(kr, chainer.ChainerBackend) else [kr]
    usable = []
    for backend in members:
        if isinstance(backend, (fail.Keyring, null.Keyring)):
            continue
        # keyrings.alt's plaintext/encrypted-file backends write the token to a file
        # in the home folder, which is exactly what we promise not to do.
        if type(backend).__module__.startswith("keyrings.alt"):
            continue
        usable.append(backend)
    return usable


def keyring_backend_available() -> bool:
    """True when the OS has a keyring that `keyring` can use."""
    try:
        return bool(_active_backends())
    except Exception:  # a broken keyring configuration must not take the program down
        log.warning("Could not inspect the keyring backend.", exc_info=True)
        return False


def backend_name() -> str:
    """A plain name for the keyring in use, e.g. 'macOS Keychain'."""
    try:
        backends = _active_backends()
    except Exception:
        backends = []
    if not backends:
        return "no keyring (this computer has no password store that gpi-desktop can use)"
    cls = type(backends[0])
    for prefix, name in _BACKEND_NAMES.items():
        if cls.__module__ == prefix or cls.__module__.startswith(prefix + "."):
            return name
    return f"the {cls.__name__} keyring"


def no_keyring_error() -> KeyringUnavailableError:
    return KeyringUnavailableError(
        "This computer has no password store (keyring) that gpi-desktop can use, so the token cannot be saved",
        remedy=Remedy.TOKEN_FOR_THIS_SESSION,
    )


def _keyring_failure(action: str, exc: Exception) -> KeyringUnavailableError:
    from keyring import errors

    if isinstance(exc, errors.KeyringLocked):
        return KeyringUnavailableError(
            f"The keyring is locked, so the token could not be {action}; unlock it (log out and in again, or open "
            "your system's password manager) and try again."
        )
    return KeyringUnavailableError(
        f"The keyring refused the request, so the token could not be {action} "
        f"({type(exc).__name__}); check your system's password manager and try again."
    )


# --- finding, saving, clearing ------------------------------------------------------------------


def _remember(token: str | None) -> str | None:
    if token:
        forms = token_forms(token)
        with _lock:
            # Longest first, so that a whole token goes before the pieces it contains.
            _known_forms[:] = sorted(forms.union(_known_forms), key=len, reverse=True)
    return token


def _clean(token: str | None) -> str | None:
    if token is None:
        return None
    token = token.strip()
    return token or None


def _from_keyring() -> str | None:
    if not keyring_backend_available():
        return None
    import keyring

    try:
        return _clean(keyring.get_password(SERVICE, USERNAME))
    except Exception as exc:
        # A locked or broken keyring should not stop a public model from loading.
        log.warning("Could not read the token from the keyring (%s).", type(exc).__name__)
        return None


def _from_environment() -> str | None:
    return _clean(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))


def _from_hf_login() -> str | None:
    """The token `hf auth login` / `huggingface-cli login` stored, ignoring HF_TOKEN.

    huggingface_hub.get_token() would also return HF_TOKEN, which we already
    report as its own source.
    """
    for path in login_token_paths():
        try:
            token = _clean(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        if token:
            return token
    return None


def login_token_paths() -> list[Path]:
    """Where a login may have put the token: under HF_HOME, then the default place.

    A cluster user often logs in once without HF_HOME (~/.cache/huggingface/token)
    and later sets HF_HOME to a scratch cache for the downloads and the jobs.
    """
    from huggingface_hub import constants

    paths = [Path(constants.HF_TOKEN_PATH)]
    if not os.environ.get("HF_TOKEN_PATH"):  # an explicit token file is the only place to look
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        default = Path(cache) / "huggingface" / "token"
        if default != paths[0]:
            paths.append(default)
    return paths


def find_token() -> TokenInfo:
    """The token to use: keyring, then this session, then HF_TOKEN, then the huggingface_hub login.

    A token the user typed into this program (saved in the keyring, or kept for
    the session where there is no keyring) wins over ones set up elsewhere,
    because it is the one they chose here.
    """
    with _lock:
        session = _session_token
    getters: tuple[tuple[str, Callable[[], str | None]], ...] = (
        ("keyring", _from_keyring),
        ("session", lambda: session),
        ("environment", _from_environment),
        ("huggingface-login", _from_hf_login),
    )
    for source, getter in getters:
        token = getter()
        if token:
            _remember(token)  # before the shape check, so that a refused token is still redacted everywhere
            problem = _shape_problem(token)
            if problem:
                raise AccessError(
                    f"{_WHERE_FOUND[source]()} {problem}, so it cannot be sent to the Hub: {_FIX_FOUND[source]()}",
                    kind="invalid-token",
                    url=TOKENS_PAGE,
                )
            return TokenInfo(token, source)
    return TokenInfo(None, "none")


# Where a refused token was found and how to replace it there; never the token itself.
_WHERE_FOUND: dict[str, Callable[[], str]] = {
    "keyring": lambda: f"The token saved in {backend_name()}",
    "session": lambda: "The token kept for this session",
    "environment": lambda: "The token in the HF_TOKEN environment variable",
    "huggingface-login": lambda: f"The token that 'hf auth login' saved ({_hf_login_path()})",
}
_FIX_FOUND: dict[str, Callable[[], str]] = {
    "keyring": lambda: (
        f"copy the token again from {TOKENS_PAGE} and save it under Hugging Face access "
        "(or with 'gpi-desktop token set')."
    ),
    "session": lambda: f"copy the token again from {TOKENS_PAGE} and paste it.",
    "environment": lambda: f"set HF_TOKEN again to the token alone, as shown at {TOKENS_PAGE}.",
    "huggingface-login": lambda: "log in again with 'hf auth login', or delete that file.",
}


def _hf_login_path() -> str:
    """The login file the token came from (the first of login_token_paths that is there)."""
    paths = login_token_paths()
    return str(next((path for path in paths if path.is_file()), paths[0]))


def _shape_problem(token: str) -> str | None:
    """What makes `token` (already stripped) unusable in an HTTP header, in words; None when it is fine.

    A line break would let the HTTP library quote the header (the token with it) in its error.
    """
    if any(c in token for c in "\r\n"):
        return "contains a line break"
    if any(c.isspace() for c in token):
        return "contains spaces"
    if not token.isascii() or not token.isprintable():
        return "contains invisible or non-English characters"
    return None


def _check_shape(token: str) -> str:
    cleaned = _clean(token)
    if not cleaned:
        raise AccessError(
            f"The token is empty; copy a token from {TOKENS_PAGE} and paste it.", kind="no-token", url=TOKENS_PAGE
        )
    problem = _shape_problem(cleaned)
    if problem:
        raise AccessError(
            f"That does not look like a Hugging Face token (it {problem}); copy it again from {TOKENS_PAGE}.",
            kind="invalid-token",
            url=TOKENS_PAGE,
        )
    return cleaned


def save_token(token: str, *, session_only: bool = False, allow_session_fallback: bool = False) -> TokenInfo:
    """Save the token in the OS keyring, or keep it in memory for this session.

    `session_only=True` never touches the keyring. Without a keyring backend,
    `allow_session_fallback=True` (the window) keeps it for the session; otherwise
    KeyringUnavailableError is raised (the command line, which has no session).
    """
    global _session_token
    token = _check_shape(token)
    _remember(token)
    if not session_only and keyring_backend_available():
        import keyring

        try:
            keyring.set_password(SERVICE, USERNAME, token)
        except Exception as exc:
            if not allow_session_fallback:
                raise _keyring_failure("saved", exc) from None
            log.warning(
                "Could not save the token in the keyring (%s); keeping it for this session.", type(exc).__name__
            )
        else:
            with _lock:
                _session_token = None
            return TokenInfo(token, "keyring")
    elif not session_only and not allow_session_fallback:
        raise no_keyring_error()
    with _lock:
        _session_token = token
    return TokenInfo(token, "session")


def clear_token() -> TokenInfo:
    """Remove the token from the keyring and from this session; return what is still found.

    HF_TOKEN and the huggingface_hub login are not ours to delete, so the
    returned TokenInfo says when one of them is still in use.
    """
    global _session_token
    with _lock:
        _session_token = None
    if keyring_backend_available():
        import keyring
        from keyring import errors

        try:
            keyring.delete_password(SERVICE, USERNAME)
        except errors.PasswordDeleteError:
            pass  # nothing was saved
        except Exception as exc:
            raise _keyring_failure("removed", exc) from None
    return find_token()


def validate_token(token: str, *, endpoint: str | None = None) -> str:
    """Ask the Hub who owns the token; return the account name or raise AccessError in plain words."""
    token = _check_shape(token)
    _remember(token)
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint).whoami(token=token)
    except Exception as exc:
        from gpi_desktop.core.hub.plain_errors import plain_hub_error

        error = plain_hub_error(exc, None, token_sent=True)
        if isinstance(error, GpiError):
            raise error from None
        raise
    name = info.get("name") if isinstance(info, dict) else None
    return str(name or "unknown account")


def forget_session_token() -> None:
    """Drop the session token (used by tests and when the window closes)."""
    global _session_token
    with _lock:
        _session_token = None


# --- keeping the token out of logs -----------------------------------------------------------------


def token_forms(token: str) -> set[str]:
    """The ways a token can be written into a message: as it is, escaped by repr() (of str or bytes),
    URL-encoded, and each line of one split across lines."""
    from urllib.parse import quote, quote_plus

    forms = {
        token,
        repr(token)[1:-1],
        repr(token.encode("utf-8", "backslashreplace"))[2:-1],
        token.encode("unicode_escape").decode("ascii"),
        quote(token),
        quote(token, safe=""),
        quote_plus(token),
    }
    forms.update(piece for piece in re.split(r"\s+", token) if len(piece) >= _MIN_PIECE)
    return {form for form in forms if form}


def redact(text: str) -> str:
    """Replace every token-looking string and every form of every token seen by this process with 'hf_***'."""
    if not text:
        return text
    with _lock:
        known = list(_known_forms)
    for form in known:
        text = text.replace(form, REDACTED)
    return TOKEN_PATTERN.sub(REDACTED, text)


class TokenRedactionFilter(logging.Filter):
    """A logging filter that rewrites a record so that no token reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


def _redact_record(record: logging.LogRecord) -> None:
    if getattr(record, "_gpi_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string is logging's problem to report, not ours to hide
        return
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._gpi_redacted = True


_installed = False


def install_token_redaction() -> None:
    """Redact tokens from every log record made in this process, whichever logger or handler.

    A filter on the root logger alone would miss records that child loggers
    propagate to root's handlers, so the record factory is wrapped as well;
    the filter is also put on root's current handlers. Safe to call twice.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    root = logging.getLogger()
    root.addFilter(TokenRedactionFilter())
    for handler in root.handlers:
        handler.addFilter(TokenRedactionFilter())

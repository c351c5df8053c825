"""`gpi-desktop token set|status|clear`: the Hugging Face token from the command line.

`set` reads the token from standard input (hidden when typed at a terminal),
so it never lands in the shell history or the process list.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from gpi_desktop.cli.error_words import cli_sentence
from gpi_desktop.core.hub import secrets
from gpi_desktop.core.vocabulary.errors import EXIT_BAD_INPUT, EXIT_OK, GpiError


def add_token_parser(subparsers) -> None:
    """Add the `token` command (with set / status / clear) to the CLI's argparse subparsers."""
    parser = subparsers.add_parser(
        "token",
        help="save, show or remove the Hugging Face token (kept in the system keyring)",
        description="Manage the Hugging Face token used to download gated models. It is kept in the "
        "operating system's keyring and never written anywhere else.",
    )
    actions = parser.add_subparsers(dest="token_action", metavar="{set,status,clear}")
    actions.required = True
    set_parser = actions.add_parser(
        "set",
        help="save a token read from standard input",
        description="Save a Hugging Face token in the keyring. Paste it when asked, or pipe it in: "
        "gpi-desktop token set < token.txt",
    )
    set_parser.add_argument(
        "--check", action="store_true", help="ask the Hugging Face Hub whether the token is valid before saving it"
    )
    actions.add_parser("status", help="say where the token comes from (never shows it)")
    actions.add_parser("clear", help="remove the saved token from the keyring")
    parser.set_defaults(handler=run_token)


def _read_token() -> str:
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass("Hugging Face token (input is hidden): ")
    return sys.stdin.readline() if sys.stdin is not None else ""


def run_token(args: argparse.Namespace) -> int:
    """Run `token set|status|clear`; returns the exit code (0, or 2 with one plain sentence on stderr)."""
    try:
        if args.token_action == "status":
            return _status()
        if args.token_action == "set":
            return _set(check=getattr(args, "check", False))
        if args.token_action == "clear":
            return _clear()
    except GpiError as error:
        print(cli_sentence(error), file=sys.stderr)
        return error.exit_code
    print("Say what to do with the token: set, status or clear.", file=sys.stderr)
    return EXIT_BAD_INPUT


def _status() -> int:
    info = secrets.find_token()
    print(f"Hugging Face token: {info.describe()}.")
    if secrets.keyring_backend_available():
        print(f"Keyring: {secrets.backend_name()}.")
    else:
        print(
            "Keyring: none. This computer has no password store that gpi-desktop can use, so "
            "'gpi-desktop token set' cannot save a token here; set HF_TOKEN or run 'hf auth login' instead."
        )
    return EXIT_OK


def _set(*, check: bool) -> int:
    if not secrets.keyring_backend_available():
        # Refuse before asking for the token, so that nobody pastes it for nothing.
        raise secrets.no_keyring_error()
    token = _read_token()
    if check:
        name = secrets.validate_token(token)
        print(f"The token is valid (account: {name}).")
    info = secrets.save_token(token)
    print(f"Saved the token in {secrets.backend_name()}.")
    if info.source != "keyring":  # pragma: no cover - save_token raises instead
        return EXIT_BAD_INPUT
    return EXIT_OK


def _clear() -> int:
    had_keyring = secrets.keyring_backend_available()
    remaining = secrets.clear_token()
    if had_keyring:
        print(f"Removed the token from {secrets.backend_name()}.")
    else:
        print("Nothing to remove: this computer has no keyring, so no token was saved by gpi-desktop.")
    if remaining:
        print(f"Note: still {remaining.describe()}; that one is not gpi-desktop's to remove.")
    return EXIT_OK

"""`gpi-desktop`: the window, or the same engine headless (`run`, `prepare`, `merge`), the token, exports, and `--self-test`.

A thin client of gpi_desktop.core: it parses flags, prints progress and turns
the project's errors into one plain sentence and an exit code. Each command is a
module of this package that adds its parser and sets its handler.
"""

from __future__ import annotations

import argparse
import logging
import sys

from gpi_desktop import __version__
from gpi_desktop.cli.error_words import cli_sentence
from gpi_desktop.cli.estimate import add_estimate_parser
from gpi_desktop.cli.exports import add_export_parsers
from gpi_desktop.cli.merge import add_merge_parser
from gpi_desktop.cli.prepare import add_prepare_parser
from gpi_desktop.cli.run import add_run_parser, stopped_message
from gpi_desktop.cli.state import sigterm_interrupts
from gpi_desktop.cli.token import add_token_parser
from gpi_desktop.core.vocabulary.errors import EXIT_CANCELLED, EXIT_FAILURE, EXIT_OK, Cancelled, GpiError

log = logging.getLogger("gpi_desktop.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpi-desktop",
        description="Generate texts and hidden states for GenAI-Powered Inference, exported as gpi_pack does. "
        "Without a command, opens the window.",
    )
    parser.add_argument("--version", action="version", version=f"gpi-desktop {__version__}")
    parser.add_argument(
        "--self-test", action="store_true", help="drive the window through the whole flow on the demo model"
    )
    parser.add_argument("--verbose", action="store_true", help="also print the log to the terminal")
    sub = parser.add_subparsers(dest="command")
    add_run_parser(sub)
    add_token_parser(sub)
    add_prepare_parser(sub)
    add_merge_parser(sub)
    add_export_parsers(sub)
    add_estimate_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from gpi_desktop.core.model.devices import enable_mps_fallback

    enable_mps_fallback()  # before anything imports torch: PyTorch reads it only then
    parser = build_parser()
    args = parser.parse_args(argv)
    from gpi_desktop.logs import setup_logging

    setup_logging(verbose=args.verbose)
    try:
        if args.self_test:
            from gpi_desktop.selftest import main as self_test

            return self_test()
        if args.command is None:
            from gpi_desktop.ui.app import main as window

            return window([sys.argv[0]])
        with sigterm_interrupts():
            return args.handler(args)
    except Cancelled:
        print(getattr(args, "stopped", None) or stopped_message(args), file=sys.stderr)
        return EXIT_CANCELLED
    except GpiError as exc:
        log.info("user error: %s", exc)
        print(f"gpi-desktop: {cli_sentence(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception:
        log.exception("unexpected failure")
        from gpi_desktop.logs import log_dir

        print(
            f"gpi-desktop: something went wrong inside the program (our bug, not yours); details are in the log in "
            f"{log_dir()}. Please report it.",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

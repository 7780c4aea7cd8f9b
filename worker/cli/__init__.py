"""`python -m worker <command>`: parse, call the domain, print (SPEC §4)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from sqlalchemy.exc import OperationalError

from config.settings import load_settings
from feeds.errors import FeedsyncError
from feeds.state.database import failure_reason
from worker import logs
from worker.cli import commands


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's default exit code 2 and usage dump; SPEC §4 wants one sentence and exit 1.
        print(f"{message[0].upper()}{message[1:].rstrip('.')}.", file=sys.stderr)
        raise SystemExit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m worker", description="Feedsync worker command line.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)
    for register in commands.REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 1
    try:
        settings = load_settings()
        quiet = getattr(args, "quiet_logs", True) and not args.verbose
        logs.configure(
            settings.log_format,
            logging.WARNING if quiet else logging.DEBUG if args.verbose else logging.INFO,
        )
        return int(args.handler(args, settings) or 0)
    except (FeedsyncError, OperationalError) as exc:
        if args.verbose:
            raise
        print(_one_sentence(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _one_sentence(exc: Exception) -> str:
    if isinstance(exc, OperationalError):
        # After the start (which names the setting): the database went away, or lacks a table.
        return (
            f"A database operation failed ({failure_reason(exc)}); check the databases of "
            "DATABASE_URL and SOURCE_DATABASE_URL, or run again with -v for the traceback."
        )
    return str(exc)

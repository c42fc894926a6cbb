"""The ``nested-inverse`` command line.

Each subcommand lives in a module of this package that exposes ``add_parser(subparsers)``; the
parser it adds sets ``func`` to a callable taking the parsed arguments and returning an exit code.
User errors (``ValueError``, ``FileNotFoundError``, other ``OSError``\\ s such as a folder that
cannot be written, and argument mistakes) print one line and exit 2, without a traceback. The
library's errors name Python arguments (`` `task_args` ``); here they are shown with the flag
that sets them (`` `--task-arg` ``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from ..errors import UsageError
from . import convert, degrade, generate, operators_cmd, restore, run, serve, train_prior
from .common import as_flags

__all__ = ["main", "build_parser", "UsageError"]

# Subcommand modules, in the order `--help` lists them.
_SUBCOMMANDS = (restore, generate, run, degrade, operators_cmd, train_prior, serve, convert)

class _Parser(argparse.ArgumentParser):
    """Argument mistakes in one line (``usage`` stays available through ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nested-inverse",
        description="Anytime image restoration with nested diffusion.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nested-inverse`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or an argument mistake already reported
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as err:
        print(f"nested-inverse {args.command}: error: {as_flags(_one_line(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nested-inverse {args.command}: interrupted", file=sys.stderr)
        return 130

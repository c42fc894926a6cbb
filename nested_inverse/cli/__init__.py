"""The ``nested-inverse`` command line.

Each subcommand lives in a module of this package that exposes ``add_parser(subparsers)``; the
parser it adds sets ``func`` to a callable taking the parsed arguments and returning an exit code.
User errors (``ValueError``, ``FileNotFoundError``, ``UsageError``) print one line and exit non-zero,
without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser", "UsageError"]

# Subcommand modules, in the order `--help` lists them; a module that is missing is skipped.
_SUBCOMMANDS = ("restore", "run", "degrade", "operators_cmd", "train_prior")


class UsageError(Exception):
    """A mistake in what the user asked for: reported in one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nested-inverse",
        description="Anytime image restoration with nested diffusion.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        print(f"nested-inverse {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nested-inverse {args.command}: interrupted", file=sys.stderr)
        return 130

"""``nested-inverse operators``: the registered degradation operators and their parameters."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser"]

_EPILOG = """\
Use a name with --task and its parameters with --task-arg KEY=VALUE, e.g.
  nested-inverse restore img.png --degrade --task blur-gauss --task-arg sigma=2.0 --out out/

Your own operator, without editing this package:
  --task my_module:make_op    a factory make_op(image_shape, generator=None, **params) returning an
                              operators.LinearOperator, imported from PYTHONPATH
  or register it from an installed package under the entry-point group `nested_inverse.operators`
  (name = operator name, value = "package.module:make_op"); it is then listed here.
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "operators", help="list the degradation operators (tasks) and their parameters",
        description="List the registered degradation operators, usable as --task, with their "
                    "parameters and defaults.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import operators

    for name in operators.available():
        try:
            line = operators.describe(name)
        except Exception as err:  # noqa: BLE001 - a broken plug-in must not hide the others
            line = f"{name}: (cannot be described: {err})"
        print(line)
    return 0

"""The `conveyor` command: reads arguments and settings, wires the parts, runs them.

Imports stay inside the command functions so that `conveyor validate` and
`conveyor run` load only what they use.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conveyor", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check workflow files; exit 2 when any is invalid")
    validate.add_argument("paths", nargs="*", help="files or directories (default .github/workflows)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "validate":
        from conveyor.workflow.validate_cli import validate_paths

        return validate_paths(args.paths or [".github/workflows"], sys.stdout, sys.stderr)
    return 2

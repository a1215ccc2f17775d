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
    validate.add_argument(
        "paths", nargs="*", help="files or directories (default .github/workflows)"
    )

    run = sub.add_parser("run", help="run a workflow on this machine through the engine")
    run.add_argument(
        "--workflow", "-W", required=True, help="workflow file, relative to the repository"
    )
    run.add_argument("--event", "-e", default="push", help="event name (default: push)")
    run.add_argument("--payload", help="event payload (JSON file)")
    run.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="workflow_dispatch / workflow_call input (repeatable)",
    )
    run.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a secret (repeatable); masked in every log line",
    )
    run.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a configuration variable for the vars context (repeatable)",
    )
    run.add_argument("--job", help="run only this job")
    run.add_argument("--report", help="write the run's report (JSON) here")
    run.add_argument(
        "--parallel",
        type=int,
        default=None,
        metavar="N",
        help="jobs at once (default: the number of cores)",
    )
    run.add_argument("--bind", action="store_true", help="run in the working tree, not a copy")
    run.add_argument("--json", action="store_true", help="one JSON object a line instead of text")
    run.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "validate":
        from conveyor.workflow.validate_cli import validate_paths

        return validate_paths(args.paths or [".github/workflows"], sys.stdout, sys.stderr)
    if args.command == "run":
        return _run(args)
    return 2


def _run(args: argparse.Namespace) -> int:
    import os

    from conveyor.local.console import Console
    from conveyor.local.run import RunOptions, UsageError, parse_pairs, run

    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    console = Console(color=color, json_lines=args.json)
    try:
        options = RunOptions(
            workflow=args.workflow,
            event=args.event,
            payload=args.payload,
            inputs=parse_pairs(args.input, "--input"),
            secrets=parse_pairs(args.secret, "--secret"),
            vars=parse_pairs(args.var, "--var"),
            job=args.job,
            report=args.report,
            parallel=args.parallel or os.cpu_count() or 2,
            bind=args.bind,
            json_lines=args.json,
        )
    except UsageError as exc:
        console.error(str(exc))
        return 2
    return run(options, console)

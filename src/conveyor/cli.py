"""The `conveyor` command: reads arguments and settings, wires the parts, runs them.

Imports stay inside the command functions so that `conveyor validate` and
`conveyor run` load only what they use.
"""

from __future__ import annotations

import argparse
import gc
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

    serve = sub.add_parser("serve", help="run the control plane: API, scheduler, reaper, cron")
    serve.add_argument("--data-dir", default=".conveyor", help="tokens, SQLite database, mirrors")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--database-url",
        default=None,
        help="postgresql://... (default: $CONVEYOR_DATABASE_URL, else SQLite in --data-dir)",
    )
    serve.add_argument("--lease-ttl", type=float, default=600.0, metavar="SECONDS")
    serve.add_argument("--heartbeat-interval", type=float, default=60.0, metavar="SECONDS")
    serve.add_argument("--reap-interval", type=float, default=5.0, metavar="SECONDS")
    serve.add_argument("--max-retries", type=int, default=3)
    serve.add_argument("--no-cron", action="store_true", help="do not fire schedule: triggers")
    serve.add_argument(
        "--secrets-file",
        default=None,
        metavar="PATH",
        help="the secrets workflows read (NAME=VALUE lines, or a .json object; "
        "default: $CONVEYOR_SECRETS_FILE)",
    )
    serve.add_argument("--runner", action="store_true", help="also run an embedded runner")

    runner = sub.add_parser("runner", help="run a runner agent that pulls jobs from a server")
    runner.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    runner.add_argument("--token", required=True, help="a registration or runner token")
    runner.add_argument(
        "--labels", default="", help="comma-separated labels (added to the defaults)"
    )
    runner.add_argument(
        "--workdir", default=".conveyor-runner", help="workspaces and the saved token"
    )
    runner.add_argument("--concurrency", type=int, default=1, help="jobs at once")
    runner.add_argument("--name", default=None)
    runner.add_argument(
        "--grace",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="on SIGTERM, how long running jobs may finish before they are cancelled",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The process's entry point (it sets the garbage collector up for the process, see _settled)."""
    gc.disable()
    try:
        return _command(_build_parser().parse_args(argv))
    finally:
        gc.enable()  # however the command ended


def _command(args: argparse.Namespace) -> int:
    if args.command == "validate":
        from conveyor.workflow.validate_cli import validate_paths

        _settled()
        return validate_paths(args.paths or [".github/workflows"], sys.stdout, sys.stderr)
    if args.command == "run":
        return _run(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "runner":
        return _runner(args)
    return 2


def _settled() -> None:
    """Start-up is over: collect garbage again, leaving out what start-up made.

    Modules, classes and compiled patterns live as long as the process, so
    collecting while they are made only walks them again and again (a fifth
    of a one-step `conveyor run`); `gc.freeze` keeps later collections off them.
    """
    gc.freeze()
    gc.enable()


def _serve(args: argparse.Namespace) -> int:
    import os

    from conveyor.runner.loop import run_event_loop
    from conveyor.service.secrets_file import SecretsFileError, load_secrets, readable_by_others
    from conveyor.service.serve import ServeOptions, serve

    secrets: dict[str, str] = {}
    if secrets_path := args.secrets_file or os.environ.get("CONVEYOR_SECRETS_FILE"):
        try:
            secrets = load_secrets(secrets_path)
        except SecretsFileError as exc:
            print(f"conveyor serve: {exc}", file=sys.stderr)
            return 2
        if readable_by_others(secrets_path):
            print(f"warning: {secrets_path} is readable by other users", file=sys.stderr)
    options = ServeOptions(
        data_dir=os.path.abspath(args.data_dir),
        host=args.host,
        port=args.port,
        database_url=args.database_url or os.environ.get("CONVEYOR_DATABASE_URL") or None,
        lease_ttl=args.lease_ttl,
        heartbeat_interval=args.heartbeat_interval,
        reap_interval=args.reap_interval,
        max_retries=args.max_retries,
        webhook_secret=os.environ.get("CONVEYOR_WEBHOOK_SECRET") or None,
        cron=not args.no_cron,
        secrets=secrets,
    )
    ready = None
    if args.runner:
        from conveyor.service.embedded import embedded_runner

        ready = embedded_runner(options)
    _settled()
    return run_event_loop(serve(options, ready=ready))  # an embedded runner spawns steps


def _runner(args: argparse.Namespace) -> int:
    import logging

    from conveyor.runner.agent import run_agent
    from conveyor.runner.loop import run_event_loop

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    _settled()
    return run_event_loop(
        run_agent(
            args.url,
            args.token,
            labels,
            workdir=args.workdir,
            concurrency=args.concurrency,
            name=args.name,
            grace=args.grace,
        )
    )


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
        )
    except UsageError as exc:
        console.error(str(exc))
        return 2
    _settled()
    return run(options, console)

"""`conveyor serve`: one store, the API, the scheduler loop, the reaper and cron.

Any number of these processes may share one PostgreSQL database: none holds
state of its own (see loops.py), so any of them can be killed at any instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from conveyor.engine.records import RunRecord, WorkflowRecord
from conveyor.engine.runs import RunService, RunSettings
from conveyor.engine.scheduler import Scheduler
from conveyor.engine.sources import RepositoryMirror
from conveyor.engine.store import Store
from conveyor.service.loops import CronLoop, Reaper, SchedulerLoop


@dataclass(frozen=True)
class ServeOptions:
    data_dir: str
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str | None = None
    lease_ttl: float = 600.0
    heartbeat_interval: float = 60.0
    reap_interval: float = 5.0
    max_retries: int = 3
    max_poll_wait: float = 50.0
    webhook_secret: str | None = None
    cron: bool = True
    secrets: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FirstStart:
    """Where the admin token and the runner registration token were written."""

    admin_token_path: str
    runner_token_path: str
    created: bool


async def ensure_tokens(store: Store, data_dir: str) -> FirstStart:
    """On first start, create an admin and a runner registration token (files mode 0600).

    The store keeps only their SHA-256; a restart with the files in place and
    known to the store creates nothing.
    """
    admin_path = os.path.join(data_dir, "admin-token")
    runner_path = os.path.join(data_dir, "runner-token")
    created = False
    for path, kind in ((admin_path, "admin"), (runner_path, "registration")):
        token = _read(path)
        if token and await store.find_token(_hash(token)) is not None:
            continue
        token = f"cv{kind[0]}_" + secrets.token_urlsafe(32)
        await store.create_token("default", kind, _hash(token))
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.replace(path + ".tmp", path)
        created = True
    return FirstStart(admin_path, runner_path, created)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


class Server:
    """The parts of one `conveyor serve` process, built from one store."""

    def __init__(self, store: Store, options: ServeOptions) -> None:
        from conveyor.api.app import create_app
        from conveyor.api.deps import Services, Settings

        self.store = store
        self.options = options
        url = f"http://{options.host}:{options.port}"
        mirror = RepositoryMirror(os.path.join(options.data_dir, "repos"))
        self.runs = RunService(
            store,
            mirror,
            RunSettings(
                server_url=url,
                lease_ttl=options.lease_ttl,
                heartbeat_interval=options.heartbeat_interval,
                secrets=dict(options.secrets),
            ),
        )
        self.scheduler_loop = SchedulerLoop(store, Scheduler(store, self.runs.context_of))
        self.reaper = Reaper(store, interval=options.reap_interval, max_retries=options.max_retries)
        self.cron = CronLoop(store, self._start_scheduled, tenants=_default_tenant)
        settings = Settings(
            data_dir=options.data_dir,
            lease_ttl=options.lease_ttl,
            heartbeat_interval=options.heartbeat_interval,
            max_poll_wait=options.max_poll_wait,
            webhook_secret=options.webhook_secret,
        )
        self.app = create_app(
            Services(
                store=store,
                settings=settings,
                start_run=self.runs.start_run,
                trigger=self.runs.trigger,
                rerun=self.runs.rerun,
                assignment_for=self.runs.assignment_for,
                read_workflow=self.runs.read_workflow,
            )
        )

    async def _start_scheduled(
        self, tenant: str, workflow: WorkflowRecord, cron: str, key: str
    ) -> RunRecord:
        payload = {"schedule": cron}
        return await self.runs.start_run(
            tenant, workflow, "schedule", payload, {}, idempotency_key=key
        )

    def loops(self) -> list[Callable[[], Awaitable[None]]]:
        loops: list[Callable[[], Awaitable[None]]] = [
            self.scheduler_loop.run_forever,
            self.reaper.run_forever,
        ]
        if self.options.cron:
            loops.append(self.cron.run_forever)
        return loops


async def _default_tenant() -> list[str]:
    return ["default"]


async def serve(
    options: ServeOptions,
    out: TextIO = sys.stdout,
    *,
    ready: Callable[[str, asyncio.Event], Awaitable[None]] | None = None,
) -> int:
    """Run the server until SIGINT/SIGTERM; `ready(url, stopping)` runs once it listens
    (`stopping` is set when the server begins to stop)."""
    import uvicorn

    from conveyor.service.http_protocol import CoalescingHttpProtocol
    from conveyor.service.http_server import Server as HttpServer
    from conveyor.store import open_store

    os.makedirs(options.data_dir, exist_ok=True)
    store = await open_store(options.database_url, data_dir=options.data_dir)
    try:
        tokens = await ensure_tokens(store, options.data_dir)
        server = Server(store, options)
        config = uvicorn.Config(
            server.app,
            host=options.host,
            port=options.port,
            log_level="warning",
            # Off, not just below the log level: uvicorn formats each request's client
            # address and path for it before the logger discards the line.
            access_log=False,
            lifespan="off",
            http=CoalescingHttpProtocol,
            # Long polls (up to 50 s) answer as the server stops (`_stop_polls`); any other
            # request gets 3 s.
            timeout_graceful_shutdown=3,
        )
        http = HttpServer(config, on_stop=lambda: _stop_polls(server))
        url = f"http://{options.host}:{options.port}"
        out.write(
            f"Conveyor is listening on {url} (API docs: {url}/api/v1/docs)\n"
            f"  admin token:               {tokens.admin_token_path}\n"
            f"  runner registration token: {tokens.runner_token_path}\n"
            f"  start a runner: conveyor runner --url {url} "
            f'--token "$(cat {tokens.runner_token_path})"\n'
        )
        out.flush()
        tasks = [asyncio.ensure_future(loop()) for loop in server.loops()]
        if ready is not None:
            stopping = server.app.state.stopping
            tasks.append(asyncio.ensure_future(_when_started(http, ready, url, stopping)))
        try:
            await http.serve()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    finally:
        await store.close()
    return 0


def _stop_polls(server: Server) -> None:
    """Have the runners' long polls answer now (no job): the server is stopping."""
    server.app.state.stopping.set()
    server.store.wake_waiters()


async def _when_started(
    http: Any,
    ready: Callable[[str, asyncio.Event], Awaitable[None]],
    url: str,
    stopping: asyncio.Event,
) -> None:
    while not http.started:
        await asyncio.sleep(0.02)
    await ready(url, stopping)

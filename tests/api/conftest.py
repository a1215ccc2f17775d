"""A real `conveyor serve` API per test: uvicorn on 127.0.0.1, a real store, the real RunService.

The server runs its own event loop in a background thread; tests talk to it
over a socket with httpx and reach the store through `Live.call`, which runs
a coroutine on the server's loop. Every test runs twice: on SQLite in
`tmp_path`, and on PostgreSQL (`CONVEYOR_TEST_POSTGRES_URL`) in a schema of
its own, dropped afterwards; without a reachable PostgreSQL that half skips.
"""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import subprocess
import tarfile
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
import uvicorn
from psycopg import sql

from conveyor.api import Services, Settings, create_app
from conveyor.api.deps import hash_token
from conveyor.engine.records import RepositoryRecord
from conveyor.engine.runs import RunService, RunSettings
from conveyor.engine.sources import RepositoryMirror
from conveyor.engine.store import Store
from conveyor.service.http_protocol import CoalescingHttpProtocol
from conveyor.store.postgres import PostgresStore
from conveyor.store.sqlite import SqliteStore

T = TypeVar("T")

ADMIN = "admin-token-of-default"
REGISTRATION = "registration-token-of-default"
OTHER_ADMIN = "admin-token-of-other"
OTHER_REGISTRATION = "registration-token-of-other"
WEBHOOK_SECRET = "It's a Secret to Everybody"
POSTGRES_URL = os.environ.get(
    "CONVEYOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

# prepare → build (a matrix of three) → report
MATRIX_YAML = """
on: workflow_dispatch
jobs:
  prepare:
    runs-on: linux
    steps: [{run: echo prepare}]
  build:
    needs: prepare
    runs-on: linux
    strategy: {matrix: {os: [a, b, c]}}
    steps: [{run: echo build}]
  report:
    needs: build
    runs-on: linux
    steps: [{run: echo report}]
"""

CI_YAML = """\
name: CI
on:
  push:
  workflow_dispatch:
    inputs:
      count:
        type: number
        default: 1
      debug:
        type: boolean
jobs:
  build:
    runs-on: linux
    steps:
      - run: echo build
  test:
    needs: build
    runs-on: linux
    steps:
      - run: echo test
"""


@dataclass
class Live:
    """The running server (with no scheduler): its URL, its loop, its store and settings."""

    url: str
    loop: asyncio.AbstractEventLoop
    store: Store
    settings: Settings

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def client(
        self, token: str | None = ADMIN, headers: dict[str, str] | None = None
    ) -> httpx.Client:
        sent = {"Authorization": f"Bearer {token}"} if token else {}
        sent.update(headers or {})
        # Plain HTTP on loopback: skipping TLS setup saves ~40 ms per client.
        return httpx.Client(base_url=self.url, headers=sent, timeout=30, verify=False)

    # -- scenario helpers, through the API and the store's own methods -------------------

    def register_workflow(
        self, source: str = CI_YAML, path: str = ".github/workflows/ci.yml"
    ) -> str:
        with self.client() as http:
            answer = http.post("/api/v1/workflows", json={"path": path, "source": source})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def dispatch(self, workflow_id: str, **inputs: Any) -> str:
        with self.client() as http:
            answer = http.post(f"/api/v1/workflows/{workflow_id}/dispatch", json={"inputs": inputs})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["run_id"])

    def register_runner(self, labels: list[str], token: str = REGISTRATION) -> tuple[str, str]:
        with self.client(token) as http:
            answer = http.post("/api/v1/runners/register", json={"name": "r", "labels": labels})
        assert answer.status_code == 201, answer.text
        body = answer.json()
        return str(body["runner_id"]), str(body["token"])

    def leased_job(
        self, labels: tuple[str, ...] = ("linux",), *, start: bool = False
    ) -> tuple[str, dict[str, Any]]:
        """A dispatched run whose `build` job (queued as the run was created) a fresh runner
        acquired (and started, if asked).

        -> (runner token, ASSIGNMENT)
        """
        self.dispatch(self.register_workflow())
        _, token = self.register_runner(list(labels))
        with self.client(token) as http:
            answer = http.post("/api/v1/runners/poll", json={"wait": 0})
            assignment = answer.json()["job"]
            assert assignment is not None, answer.text
            if start:
                started = http.post(
                    f"/api/v1/jobs/{assignment['job_id']}/start",
                    json={"epoch": assignment["epoch"]},
                )
                assert started.status_code == 200, started.text
        return token, assignment


async def _seed_tokens(store: Store) -> None:
    await store.create_tenant("other", "Other")
    for tenant, kind, token in (
        ("default", "admin", ADMIN),
        ("default", "registration", REGISTRATION),
        ("other", "admin", OTHER_ADMIN),
        ("other", "registration", OTHER_REGISTRATION),
    ):
        await store.create_token(tenant, kind, hash_token(token))


def _services(store: Store, settings: Settings, tmp: Path) -> Services:
    mirror = RepositoryMirror(str(tmp / "mirrors"))
    runs = RunService(
        store,
        mirror,
        RunSettings(lease_ttl=settings.lease_ttl, heartbeat_interval=settings.heartbeat_interval),
    )

    async def read_workflow(repository: RepositoryRecord, path: str) -> str:
        await mirror.sync(repository.url)
        sha = await mirror.resolve(repository.url, "HEAD")
        return await mirror.show(repository.url, sha, path)

    return Services(
        store=store,
        settings=settings,
        start_run=runs.start_run,
        trigger=runs.trigger,
        rerun=runs.rerun,
        assignment_for=runs.assignment_for,
        read_workflow=read_workflow,
    )


BACKEND_INDEPENDENT = pytest.mark.backend_independent
"""For tests of the API's own checks, which reach no store: run on SQLite only."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "settings(**changes): change the API server's Settings")
    config.addinivalue_line("markers", "backend_independent: run on SQLite only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database" in metafunc.fixturenames:
        independent = metafunc.definition.get_closest_marker("backend_independent")
        backends = ["sqlite"] if independent else ["sqlite", "postgres"]
        metafunc.parametrize("database", backends, indirect=True)


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    marker = request.node.get_closest_marker("settings")
    changes = marker.kwargs if marker is not None else {}
    return replace(_default_settings(tmp_path), **changes)


def _default_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "data"),
        lease_ttl=30.0,
        heartbeat_interval=1.0,
        max_poll_wait=2.0,
        max_artifact_bytes=64 << 10,
        max_request_bytes=256 << 10,
        webhook_secret=WEBHOOK_SECRET,
        log_poll_interval=0.02,
    )


@cache
def _postgres_unreachable() -> str | None:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}"
    return None


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """Where the server's store lives: a SQLite path, or (None for SQLite) a PostgreSQL schema."""
    if request.param == "sqlite":
        yield None
        return
    if (reason := _postgres_unreachable()) is not None:
        pytest.skip(reason)
    schema = f"conveyor_api_{secrets.token_hex(6)}"
    yield schema
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def _open_store(schema: str | None, tmp_path: Path) -> Store:
    if schema is not None:
        return await PostgresStore.open(POSTGRES_URL, schema=schema)
    return await SqliteStore.open(str(tmp_path / "conveyor.db"))


@pytest.fixture
def live(tmp_path: Path, settings: Settings, database: str | None) -> Iterator[Live]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="api-server", daemon=True)
    thread.start()

    async def start() -> tuple[Store, uvicorn.Server, asyncio.Task[None]]:
        store = await _open_store(database, tmp_path)
        await _seed_tokens(store)
        app = create_app(_services(store, settings, tmp_path))
        # Port 0: uvicorn binds a free port itself (its sockets get TCP_NODELAY, which a
        # socket made here with proto 0 would not: every response would wait 40 ms).
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            http=CoalescingHttpProtocol,  # as `conveyor serve` runs it
            log_level="critical",
            lifespan="off",
            access_log=False,
        )
        server = uvicorn.Server(config)
        task = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        return store, server, task

    store, server, task = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    live = Live(f"http://{host}:{port}", loop, store, settings)
    try:
        yield live
    finally:

        async def stop() -> None:
            server.should_exit = True
            await task
            await store.close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def git_repository(path: Path, files: dict[str, str]) -> str:
    """A git repository at `path` with `files` committed on `main`; -> the commit sha."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "initial")
    return git("rev-parse", "HEAD")


def tar_bytes(members: dict[str, bytes], *, link: tuple[str, str] | None = None) -> bytes:
    """A tar with `members` as files (and a symlink `link = (name, target)`)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo(link[0])
            info.type = tarfile.SYMTYPE
            info.linkname = link[1]
            archive.addfile(info)
    return out.getvalue()

"""A real `conveyor serve` API per test: uvicorn on 127.0.0.1, a real store, the real RunService.

The server runs its own event loop in a background thread; tests talk to it
over a socket with httpx and reach the store through `Live.call`, which runs
a coroutine on the server's loop. The store is SQLite in `tmp_path` (and
PostgreSQL when `conveyor.store.postgres` is importable and a server is
configured for the store tests).
"""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import tarfile
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from conveyor.api import Services, Settings, create_app
from conveyor.api.deps import hash_token
from conveyor.engine.records import JobInstance, JobRecord, RepositoryRecord
from conveyor.engine.runs import RunService, RunSettings
from conveyor.engine.sources import RepositoryMirror
from conveyor.engine.store import Store
from conveyor.store.sqlite import SqliteStore

T = TypeVar("T")

ADMIN = "admin-token-of-default"
REGISTRATION = "registration-token-of-default"
OTHER_ADMIN = "admin-token-of-other"
OTHER_REGISTRATION = "registration-token-of-other"
WEBHOOK_SECRET = "It's a Secret to Everybody"

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
    """The running server: its URL, its store, and what the fake scheduler was told."""

    url: str
    loop: asyncio.AbstractEventLoop
    store: Store
    settings: Settings
    wakes: list[float] = field(default_factory=list)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def client(
        self, token: str | None = ADMIN, headers: dict[str, str] | None = None
    ) -> httpx.Client:
        sent = {"Authorization": f"Bearer {token}"} if token else {}
        sent.update(headers or {})
        return httpx.Client(base_url=self.url, headers=sent, timeout=30)

    # -- scenario helpers, through the API and the store's own methods -------------------

    def register_workflow(self, source: str = CI_YAML, path: str = ".github/workflows/ci.yml") -> str:
        with self.client() as http:
            answer = http.post("/api/v1/workflows", json={"path": path, "source": source})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def dispatch(self, workflow_id: str, **inputs: Any) -> str:
        with self.client() as http:
            answer = http.post(f"/api/v1/workflows/{workflow_id}/dispatch", json={"inputs": inputs})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["run_id"])

    def queue_roots(self, run_id: str) -> list[JobRecord]:
        """Queue the run's jobs that need nothing, as the scheduler would."""

        async def queue() -> list[JobRecord]:
            queued: list[JobRecord] = []
            for job in await self.store.list_jobs(run_id):
                if not job.needs:
                    queued += await self.store.queue_job(job.id, [JobInstance(job.name, None)])
            return queued

        return self.call(queue())

    def register_runner(self, labels: list[str], token: str = REGISTRATION) -> tuple[str, str]:
        with self.client(token) as http:
            answer = http.post("/api/v1/runners/register", json={"name": "r", "labels": labels})
        assert answer.status_code == 201, answer.text
        body = answer.json()
        return str(body["runner_id"]), str(body["token"])

    def leased_job(self, labels: tuple[str, ...] = ("linux",)) -> tuple[str, dict[str, Any]]:
        """A dispatched run whose `build` job a fresh runner has acquired: (runner token, ASSIGNMENT)."""
        run_id = self.dispatch(self.register_workflow())
        self.queue_roots(run_id)
        _, token = self.register_runner(list(labels))
        with self.client(token) as http:
            answer = http.post("/api/v1/runners/poll", json={"wait": 0})
        assignment = answer.json()["job"]
        assert assignment is not None, answer.text
        return token, assignment


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def _seed_tokens(store: Store) -> None:
    await store.create_tenant("other", "Other")
    for tenant, kind, token in (
        ("default", "admin", ADMIN),
        ("default", "registration", REGISTRATION),
        ("other", "admin", OTHER_ADMIN),
        ("other", "registration", OTHER_REGISTRATION),
    ):
        await store.create_token(tenant, kind, hash_token(token))


def _services(store: Store, settings: Settings, tmp: Path, wakes: list[float]) -> Services:
    loop = asyncio.get_running_loop()
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
        wake_scheduler=lambda: wakes.append(loop.time()),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "settings(**changes): change the API server's Settings")


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


@pytest.fixture
def live(tmp_path: Path, settings: Settings) -> Iterator[Live]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="api-server", daemon=True)
    thread.start()
    sock = _free_socket()
    wakes: list[float] = []

    async def start() -> tuple[Store, uvicorn.Server, asyncio.Task[None]]:
        store = await SqliteStore.open(str(tmp_path / "conveyor.db"))
        await _seed_tokens(store)
        app = create_app(_services(store, settings, tmp_path, wakes))
        config = uvicorn.Config(app, log_level="critical", lifespan="off", access_log=False)
        server = uvicorn.Server(config)
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        return store, server, task

    store, server, task = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    host, port = sock.getsockname()
    live = Live(f"http://{host}:{port}", loop, store, settings, wakes)
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
        sock.close()


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

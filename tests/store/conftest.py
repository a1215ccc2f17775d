"""Fixtures for the store tests: a real store per backend, a settable clock, a scenario kit.

`store` is parametrized over every backend: SQLite in a file and in memory,
and the real PostgreSQL at $CONVEYOR_TEST_POSTGRES_URL (default: the local
server's `test` database), in a schema of its own per test, dropped after
it. `shared` gives a place several stores can open at once (a SQLite file,
a PostgreSQL schema). Each test runs on one event loop, fixtures included.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conveyor.engine.records import (
    JobInstance,
    JobRecord,
    NewJob,
    NewRun,
    OutboxEvent,
    RunRecord,
)
from conveyor.engine.states import Conclusion, JobStatus
from conveyor.engine.store import Store
from conveyor.store.postgres import PostgresStore
from conveyor.store.sqlite import SqliteStore

BACKENDS = ["sqlite-file", "sqlite-memory", "postgres"]
SHARED = ["sqlite-file", "postgres"]
TTL = 60.0
POSTGRES_URL = os.environ.get(
    "CONVEYOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def aio() -> Iterator[asyncio.Runner]:
    """The event loop of one test: its async fixtures and its body share it."""
    with asyncio.Runner() as runner:
        yield runner


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = inspect.signature(pyfuncitem.obj).parameters
    runner: asyncio.Runner = pyfuncitem.funcargs["aio"]
    runner.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


@cache
def postgres_unreachable() -> str | None:
    """Why the test PostgreSQL cannot be used, or None when it can."""
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}"
    return None


@dataclass(frozen=True)
class Place:
    """Where a test's stores live: a SQLite path, or a PostgreSQL schema of its own."""

    backend: str
    path: str = ":memory:"
    schema: str | None = None

    async def open(self, clock: Clock) -> Store:
        if self.schema is not None:
            return await PostgresStore.open(POSTGRES_URL, schema=self.schema, clock=clock)
        return await SqliteStore.open(self.path, clock=clock)


@pytest.fixture
def place_of(tmp_path: Path) -> Iterator[Any]:
    """A function from a backend name to a fresh Place; PostgreSQL schemas are dropped after."""
    schemas: list[str] = []

    def place(backend: str) -> Place:
        if backend == "sqlite-file":
            return Place(backend, path=str(tmp_path / f"conveyor-{secrets.token_hex(4)}.db"))
        if backend == "sqlite-memory":
            return Place(backend)
        if (reason := postgres_unreachable()) is not None:
            pytest.skip(reason)
        schemas.append(f"conveyor_test_{secrets.token_hex(6)}")
        return Place(backend, schema=schemas[-1])

    yield place
    if schemas:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


def in_threads(
    place: Place, clock: Clock, count: int, work: Callable[[Store, int], Awaitable[Any]]
) -> list[Any]:
    """`work(store, n)` for n < count, all at once: each in a thread with its own loop and store."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count
    failures: list[BaseException] = []

    def main(n: int) -> None:
        async def go() -> None:
            store = await place.open(clock)
            try:
                start.wait()
                results[n] = await work(store, n)
            finally:
                await store.close()

        try:
            asyncio.run(go())
        except BaseException as exc:
            failures.append(exc)
            start.abort()

    threads = [threading.Thread(target=main, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:  # the first real failure, not the broken barrier it left behind
        raise next(
            (f for f in failures if not isinstance(f, threading.BrokenBarrierError)), failures[0]
        )
    return results


@pytest.fixture(params=SHARED)
def shared(request: pytest.FixtureRequest, place_of: Any) -> Place:
    """A place on a backend where several stores (connections) can open at once."""
    place: Place = place_of(request.param)
    return place


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=BACKENDS)
def store(
    request: pytest.FixtureRequest, place_of: Any, clock: Clock, aio: asyncio.Runner
) -> Iterator[Store]:
    place: Place = place_of(request.param)
    opened = aio.run(place.open(clock))
    yield opened
    aio.run(opened.close())


def new_run(**changes: Any) -> NewRun:
    fields: dict[str, Any] = {
        "workflow_path": ".github/workflows/ci.yml",
        "workflow_name": "CI",
        "event": "push",
        "payload": {"ref": "refs/heads/main"},
        "ref": "refs/heads/main",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "inputs": {},
    }
    fields.update(changes)
    return NewRun(**fields)


class Kit:
    """Scenario steps that put jobs into a given state through the store's own API."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def new_run(self, **changes: Any) -> NewRun:
        return new_run(**changes)

    async def run(
        self, *keys: str, labels: Sequence[str] = (), **changes: Any
    ) -> tuple[RunRecord, list[JobRecord]]:
        jobs = [NewJob(key, key.title(), (), tuple(labels)) for key in keys or ("build",)]
        return await self.store.create_run(new_run(**changes), jobs)

    async def queued(self, labels: Sequence[str] = ()) -> JobRecord:
        _, (job,) = await self.run("build", labels=labels)
        (queued,) = await self.store.queue_job(job.id, [JobInstance("Build", None)])
        return queued

    async def acquired(self) -> JobRecord:
        await self.queued()
        job = await self.store.acquire_job("runner-1", [], TTL)
        assert job is not None
        return job

    async def running(self) -> JobRecord:
        job = await self.acquired()
        return await self.store.start_job(job.id, job.lease_epoch)

    async def job_in(self, status: JobStatus) -> JobRecord:
        """A fresh job in `status`, reached by the ordinary path."""
        if status in (JobStatus.PENDING, JobStatus.SKIPPED, JobStatus.CANCELLED):
            _, (job,) = await self.run("build")
            if status is JobStatus.SKIPPED:
                return await self.store.skip_job(job.id, "if: false")
            if status is JobStatus.CANCELLED:
                return await self.store.cancel_job(job.id, "user asked")
            return job
        if status is JobStatus.QUEUED:
            return await self.queued()
        if status is JobStatus.ACQUIRED:
            return await self.acquired()
        job = await self.running()
        if status is JobStatus.RUNNING:
            return job
        conclusion = Conclusion.SUCCESS if status is JobStatus.COMPLETED else Conclusion.FAILURE
        return await self.store.finish_job(job.id, job.lease_epoch, status, conclusion, {})

    async def events(self) -> list[OutboxEvent]:
        return await self.store.events_after(0, limit=100_000)

    async def kinds(self) -> list[str]:
        return [event.kind for event in await self.events()]


@pytest.fixture
def kit(store: Store, clock: Clock) -> Kit:
    return Kit(store, clock)

"""Fixtures for the store tests: a real store per backend, a settable clock, a scenario kit.

`store` is parametrized over backends; a PostgreSQL backend joins by adding
a parameter here. `async def` tests run on a fresh event loop each.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

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
from conveyor.store.sqlite import SqliteStore

BACKENDS = ["sqlite-file", "sqlite-memory"]
TTL = 60.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = inspect.signature(pyfuncitem.obj).parameters
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


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


async def open_backend(backend: str, tmp_path: Path, clock: Clock) -> SqliteStore:
    path = str(tmp_path / "conveyor.db") if backend == "sqlite-file" else ":memory:"
    return await SqliteStore.open(path, clock=clock)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Store]:
    opened = asyncio.run(open_backend(request.param, tmp_path, clock))
    yield opened
    asyncio.run(opened.close())


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

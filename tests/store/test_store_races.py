"""Races between stores sharing one database: each thing happens once, no event is skipped."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest
from tests.store.conftest import TTL, in_threads, new_run

from conveyor.engine.records import JobInstance, NewJob
from conveyor.engine.reports import (
    JobEnded,
    JobStarted,
    LogLines,
    StepEnded,
    StepFinish,
    StepStarted,
)
from conveyor.engine.runplan import plan_run
from conveyor.engine.scheduler import RunContext, Scheduler
from conveyor.engine.states import Conclusion, JobStatus, RunStatus, StepStatus
from conveyor.engine.store import Store
from conveyor.service.loops import SchedulerLoop
from conveyor.workflow import parse_workflow
from conveyor.workflow.model import Workflow

if TYPE_CHECKING:
    from tests.store.conftest import Clock, Place


async def test_one_delivery_creates_one_run(shared: Place, clock: Clock) -> None:
    async def deliver(store: Store, n: int) -> str:
        run, _ = await store.create_run(
            new_run(idempotency_key="delivery-42"), [NewJob("build", "Build", (), ())]
        )
        return run.id

    ids = in_threads(shared, clock, 4, deliver)
    assert len(set(ids)) == 1
    store = await shared.open(clock)
    assert [e.kind for e in await store.events_after(0)] == ["run.created"]
    assert len(await store.list_jobs(ids[0])) == 1
    await store.close()


async def test_one_of_many_requests_with_a_key_reserves_it(shared: Place, clock: Clock) -> None:
    async def reserve(store: Store, n: int) -> list[str | None]:
        return [
            (await store.reserve_response("default", f"key-{k}", "f" * 64, 60.0)).reservation
            for k in range(10)
        ]

    held = in_threads(shared, clock, 4, reserve)
    assert [sum(r is not None for r in column) for column in zip(*held, strict=True)] == [1] * 10


@pytest.mark.parametrize("reads_number", [True, False])
async def test_runs_created_at_once_get_distinct_numbers(
    shared: Place, clock: Clock, reads_number: bool
) -> None:
    """Drawn before the creation, or (PostgreSQL) by the creating statement itself."""

    async def create(store: Store, n: int) -> list[int]:
        numbers = []
        for _ in range(5):
            run, _ = await store.create_run(
                new_run(), [], queue_now=lambda r: None, queue_now_reads_number=reads_number
            )
            numbers.append(run.run_number)
        return numbers

    numbers = [number for got in in_threads(shared, clock, 4, create) for number in got]
    assert sorted(numbers) == list(range(1, 21))


async def test_a_tailing_consumer_sees_every_event_once(shared: Place, clock: Clock) -> None:
    """Writers commit concurrently; a consumer following `id > cursor` misses nothing.

    On PostgreSQL, ids drawn from a plain sequence make this consumer skip a
    few events in most runs; the outbox draws them in commit order instead.
    """
    writers = [await shared.open(clock) for _ in range(8)]
    consumer = await shared.open(clock)
    seen: list[int] = []
    done = asyncio.Event()

    async def write(store: Store) -> None:
        for _ in range(25):
            _, (job,) = await store.create_run(new_run(), [NewJob("b", "B", (), ())])
            await store.queue_job(job.id, [JobInstance("B", None)])
            await store.cancel_job(job.id, "enough")

    async def follow() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            for event in await consumer.events_after(cursor, limit=7):
                seen.append(event.id)
                cursor = event.id
            if finished and not await consumer.events_after(cursor):
                return
            await asyncio.sleep(0)  # poll as fast as the writers commit

    following = asyncio.create_task(follow())
    await asyncio.gather(*(write(store) for store in writers))
    done.set()
    await following
    everything = [event.id for event in await consumer.events_after(0, limit=10_000)]
    assert len(everything) == 8 * 25 * 3
    assert seen == everything
    for store in [*writers, consumer]:
        await store.close()


async def test_jobs_of_one_run_reported_whole_at_once_start_it_once(
    shared: Place, clock: Clock
) -> None:
    """Each job's report starts, runs and ends it; the run starts once and ends at most once,
    and only as the last of its jobs ends."""
    store = await shared.open(clock)
    keys = [f"job-{n}" for n in range(8)]
    run, jobs = await store.create_run(new_run(), [NewJob(k, k, (), ()) for k in keys])
    for job in jobs:
        await store.queue_job(job.id, [JobInstance(job.name, None)])
    leased = [await store.acquire_job(f"runner-{n}", [], 60) for n in range(len(jobs))]
    done = StepFinish(StepStatus.COMPLETED, Conclusion.SUCCESS, Conclusion.SUCCESS, {})

    async def report(other: Store, n: int) -> None:
        for job in leased[n * 2 : n * 2 + 2]:
            assert job is not None
            events = [
                JobStarted(),
                StepStarted(0, None, "only"),
                LogLines([(0, f"{job.key} ran")]),
                StepEnded(0, done),
                JobEnded(JobStatus.COMPLETED, Conclusion.SUCCESS, {}),
            ]
            assert await other.apply_report(job.id, job.lease_epoch, events, seq=1) == 1

    in_threads(shared, clock, 4, report)
    kinds = [event.kind for event in await store.events_after(0, limit=1000)]
    assert kinds.count("run.started") == 1
    assert kinds.count("job.completed") == len(jobs)
    assert kinds.count("run.completed") <= 1
    ended = await store.get_run(run.id)
    # Two last jobs ending at once may each see the other unfinished; the scheduler then
    # concludes the run on their `job.completed`.
    assert ended.status is (
        RunStatus.COMPLETED if "run.completed" in kinds else RunStatus.IN_PROGRESS
    )
    assert all(job.status is JobStatus.COMPLETED for job in await store.list_jobs(run.id))
    await store.close()


DAG = """
on: push
jobs:
  lint:
    runs-on: ubuntu-latest
    steps: [{run: "true"}]
  build:
    needs: lint
    runs-on: ubuntu-latest
    strategy:
      matrix:
        py: ["3.11", "3.12", "3.13"]
    steps: [{run: "true"}]
  docs:
    needs: lint
    runs-on: ubuntu-latest
    steps: [{run: "true"}]
  ship:
    needs: [build, docs]
    runs-on: ubuntu-latest
    steps: [{run: "true"}]
"""


def _no_calls(path: str) -> Workflow:
    raise AssertionError(f"the workflow calls no other: {path}")


async def test_two_schedulers_on_one_outbox_queue_each_job_once(
    shared: Place, clock: Clock
) -> None:
    """Two SchedulerLoops, each on its own store, consume the same outbox at once while a
    third store completes every job it can lease; every job is queued once, every run ends."""
    plan = plan_run(parse_workflow(".github/workflows/ci.yml", DAG), _no_calls)
    context = RunContext(plan=plan, github={})
    store = await shared.open(clock)
    jobs = [NewJob(p.key, p.key, p.need_groups, ()) for p in plan]
    run_ids = [(await store.create_run(new_run(), jobs))[0].id for _ in range(8)]
    done = threading.Event()

    async def context_of(run: object) -> RunContext:
        return context

    async def concluded(other: Store) -> bool:
        runs = [await other.get_run(run_id) for run_id in run_ids]
        return all(run.status is RunStatus.COMPLETED for run in runs)

    async def schedule(other: Store) -> None:
        loop = SchedulerLoop(other, Scheduler(other, context_of))
        while not done.is_set():  # run_forever's loop, without swallowing errors
            if not await loop.step(batch=4):
                await other.wait_for_event(0.01)

    async def work(other: Store) -> int:
        finished = 0
        deadline = time.monotonic() + 60
        while not done.is_set() and not await concluded(other):  # done: a scheduler failed
            assert time.monotonic() < deadline, "the runs did not conclude"
            job = await other.acquire_job("runner", ["ubuntu-latest"], TTL)
            if job is None:
                await asyncio.sleep(0.002)
                continue
            running = await other.start_job(job.id, job.lease_epoch)
            await other.finish_job(
                job.id, running.lease_epoch, JobStatus.COMPLETED, Conclusion.SUCCESS, {}
            )
            finished += 1
        return finished

    async def role(other: Store, n: int) -> int | None:
        try:
            return await work(other) if n == 2 else await schedule(other)
        finally:
            done.set()  # the work is done, or failed: the schedulers stop

    finished = in_threads(shared, clock, 3, role)[2]
    events = await store.events_after(0, limit=100_000)
    queued = Counter(e.job_id for e in events if e.kind == "job.queued")
    all_jobs = [job for run_id in run_ids for job in await store.list_jobs(run_id)]
    assert finished == len(all_jobs) == 8 * 6  # the matrix made three builds, not six
    assert queued == dict.fromkeys((job.id for job in all_jobs), 1)
    for run_id in run_ids:
        run = await store.get_run(run_id)
        assert (run.status, run.conclusion) == (RunStatus.COMPLETED, Conclusion.SUCCESS)
        keys = sorted(job.key for job in await store.list_jobs(run_id))
        assert keys == ["build"] * 3 + ["docs", "lint", "ship"]
    ended = Counter(e.run_id for e in events if e.kind == "run.completed")
    assert ended == dict.fromkeys(run_ids, 1)
    await store.close()

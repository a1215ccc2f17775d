"""wait_for_event and wait_for_queued: woken by the commits that concern them, never
by a commit they already missed, and not by the others."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tests.store.conftest import POSTGRES_URL, Kit, new_run

from conveyor.engine.records import JobInstance, NewJob
from conveyor.engine.reports import JobEnded, JobStarted
from conveyor.engine.states import Conclusion, JobStatus, RunStatus
from conveyor.engine.store import Store
from conveyor.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from tests.store.conftest import Clock, Place

QUIET = 0.2  # long enough to tell "woken" from "timed out" on a loaded machine


async def timed(store: Store, timeout: float) -> float:
    started = time.monotonic()
    await store.wait_for_event(timeout)
    return time.monotonic() - started


async def queue_timed(store: Store, timeout: float) -> float:
    started = time.monotonic()
    await store.wait_for_queued(timeout)
    return time.monotonic() - started


async def test_nothing_happening_waits_the_whole_timeout(kit: Kit) -> None:
    await kit.store.events_after(0)
    assert await timed(kit.store, QUIET) >= QUIET
    assert await timed(kit.store, 0) < QUIET


async def test_a_commit_wakes_a_waiting_task(kit: Kit) -> None:
    await kit.store.events_after(0)
    waiter = asyncio.create_task(timed(kit.store, 30))
    await asyncio.sleep(0.05)
    await kit.run()
    assert await asyncio.wait_for(waiter, 5) < 5


async def test_a_commit_since_the_last_look_returns_at_once(kit: Kit) -> None:
    assert await kit.store.events_after(0) == []
    await kit.run()  # e.g. another task queued a job between the look and the wait
    assert await timed(kit.store, 30) < 5
    assert await timed(kit.store, QUIET) >= QUIET  # that commit is now seen


async def test_a_queued_job_wakes_a_polling_runner_and_nothing_else_does(kit: Kit) -> None:
    assert await kit.store.acquire_job("r", [], 60) is None
    waiter = asyncio.create_task(queue_timed(kit.store, 30))
    await asyncio.sleep(0.05)
    await kit.run()  # a run whose jobs wait for the scheduler: nothing to take yet
    assert not waiter.done()
    await kit.queued()
    assert await asyncio.wait_for(waiter, 5) < 5


async def test_a_job_queued_since_the_last_acquisition_attempt_returns_at_once(kit: Kit) -> None:
    assert await kit.store.acquire_job("r", [], 60) is None
    await kit.queued()
    assert await queue_timed(kit.store, 30) < 5
    assert await queue_timed(kit.store, QUIET) >= QUIET  # that commit is now seen


async def test_an_acquisition_and_a_steps_start_wake_nobody(kit: Kit) -> None:
    job = await kit.queued()
    await kit.store.events_after(0)
    acquired = await kit.store.acquire_job("r", [], 60)
    assert acquired is not None
    scheduler = asyncio.create_task(timed(kit.store, QUIET))
    poll = asyncio.create_task(queue_timed(kit.store, QUIET))
    await asyncio.sleep(0)
    await kit.store.start_job(job.id, acquired.lease_epoch)
    await kit.store.start_step(job.id, acquired.lease_epoch, 0, None, "build")
    assert await scheduler >= QUIET
    assert await poll >= QUIET


async def test_writes_without_events_wake_nobody(kit: Kit) -> None:
    job = await kit.running()
    await kit.store.events_after(0)
    waiter = asyncio.create_task(timed(kit.store, QUIET))
    await asyncio.sleep(0)
    await kit.store.renew_lease(job.id, job.lease_epoch, 60)
    await kit.store.append_log(job.id, job.lease_epoch, [(0, "line")])
    assert await waiter >= QUIET


async def test_commits_that_leave_the_scheduler_nothing_do_not_wake_it(kit: Kit) -> None:
    """A run whose creation queued its roots, and a job's end that concluded its run
    (holding no concurrency group), leave it nothing to decide; a creation without
    queued roots does."""
    await kit.store.events_after(0)
    scheduler = asyncio.create_task(timed(kit.store, QUIET))
    poll = asyncio.create_task(queue_timed(kit.store, 30))
    await asyncio.sleep(0)
    roots = {"build": [JobInstance("build", None)]}
    await kit.store.create_run(
        new_run(), [NewJob("build", "build", (), ())], queue_now=lambda r: roots
    )
    assert await poll < 5  # but a runner has a job to take
    job = await kit.store.acquire_job("r", [], 60)
    assert job is not None
    ended = [JobStarted(), JobEnded(JobStatus.COMPLETED, Conclusion.SUCCESS, {})]
    await kit.store.apply_report(job.id, job.lease_epoch, ended)
    assert await scheduler >= QUIET
    assert (await kit.store.get_run(job.run_id)).status is RunStatus.COMPLETED

    waiter = asyncio.create_task(timed(kit.store, 30))
    await asyncio.sleep(0)
    await kit.store.create_run(new_run(), [NewJob("build", "build", (), ())])
    assert await waiter < 5


async def test_every_waiter_is_woken(kit: Kit) -> None:
    await kit.store.events_after(0)
    waiters = [asyncio.create_task(timed(kit.store, 30)) for _ in range(5)]
    await asyncio.sleep(0.05)
    await kit.run()
    assert all(elapsed < 5 for elapsed in await asyncio.gather(*waiters))


async def test_another_servers_commit_wakes_a_postgres_waiter(
    place_of: object, clock: Clock
) -> None:
    place: Place = place_of("postgres")  # type: ignore[operator]
    listener, writer = await place.open(clock), await place.open(clock)
    await listener.events_after(0)
    waiter = asyncio.create_task(timed(listener, 30))
    await asyncio.sleep(0.05)
    await writer.create_run(new_run(), [])
    assert await asyncio.wait_for(waiter, 5) < 5
    await writer.close()
    await listener.close()


async def test_a_sqlite_store_wakes_waiters_on_other_threads(tmp_path: Path) -> None:
    store = await SqliteStore.open(str(tmp_path / "c.db"))
    await store.events_after(0)
    waiter = asyncio.create_task(timed(store, 30))
    await asyncio.sleep(0.05)
    writer = threading.Thread(target=lambda: asyncio.run(store.create_run(new_run(), [])))
    writer.start()
    elapsed = await asyncio.wait_for(waiter, 5)
    writer.join()
    assert elapsed < 5
    await store.close()


async def test_another_servers_queued_job_wakes_a_postgres_poll(
    place_of: object, clock: Clock
) -> None:
    place: Place = place_of("postgres")  # type: ignore[operator]
    listener, writer = await place.open(clock), await place.open(clock)
    assert await listener.acquire_job("r", [], 60) is None
    waiter = asyncio.create_task(queue_timed(listener, 30))
    await asyncio.sleep(0.05)
    await writer.create_run(new_run(), [])
    await asyncio.sleep(0.1)
    assert not waiter.done()  # a new run: the scheduler's business, not the runners'
    await Kit(writer, clock).queued()
    assert await asyncio.wait_for(waiter, 5) < 5
    await writer.close()
    await listener.close()


async def test_commits_in_another_schema_wake_nobody(place_of: object, clock: Clock) -> None:
    ours: Place = place_of("postgres")  # type: ignore[operator]
    theirs: Place = place_of("postgres")  # type: ignore[operator]
    listener, writer = await ours.open(clock), await theirs.open(clock)
    await listener.events_after(0)
    waiter = asyncio.create_task(timed(listener, QUIET))
    await asyncio.sleep(0)
    await writer.create_run(new_run(), [])
    assert await waiter >= QUIET
    await writer.close()
    await listener.close()


async def test_a_notification_without_flags_wakes_both(place_of: object, clock: Clock) -> None:
    """A server from before the flags notifies with the schema alone: anyone may care."""
    import psycopg

    place: Place = place_of("postgres")  # type: ignore[operator]
    listener = await place.open(clock)
    await listener.events_after(0)
    assert await listener.acquire_job("r", [], 60) is None
    scheduler = asyncio.create_task(timed(listener, 30))
    poll = asyncio.create_task(queue_timed(listener, 30))
    await asyncio.sleep(0.1)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as raw:
        raw.execute("SELECT pg_notify('conveyor_outbox', %s)", (place.schema or "",))
    assert await asyncio.wait_for(scheduler, 5) < 5
    assert await asyncio.wait_for(poll, 5) < 5
    await listener.close()


async def poll(store: Store, runner: str, labels: list[str], timeout: float) -> str | None:
    """What the API's poll does: try, wait for a queued job, try again, until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        job = await store.acquire_job(runner, labels, 60)
        if job is not None:
            return job.id
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        await store.wait_for_queued(remaining)


async def test_a_queued_job_wakes_one_poll_and_one_that_cannot_take_it_passes_it_on(
    kit: Kit,
) -> None:
    tries: list[str] = []
    acquire = kit.store.acquire_job

    async def counted(runner: str, *args: object, **kwargs: object) -> object:
        tries.append(runner)
        return await acquire(runner, *args, **kwargs)  # type: ignore[arg-type]

    kit.store.acquire_job = counted  # type: ignore[method-assign]
    polls = {}
    for runner, labels in [("gpu", ["gpu"]), ("linux-1", ["linux"]), ("linux-2", ["linux"])]:
        polls[runner] = asyncio.create_task(poll(kit.store, runner, labels, 1.0))
        await asyncio.sleep(0.1)  # they wait in this order
    tries.clear()
    _, (job,) = await kit.run("build", labels=["linux"])
    await kit.store.queue_job(job.id, [JobInstance("Build", None)])
    assert await asyncio.wait_for(polls["linux-1"], 5) == job.id
    # the longest waiting poll was woken first, found nothing it could take, and passed it on
    assert tries[:2] == ["gpu", "linux-1"]
    assert await polls["linux-2"] is None and await polls["gpu"] is None
    assert tries.count("linux-2") == 1  # never woken: only tried again at its timeout


async def test_a_commit_queuing_several_jobs_wakes_as_many_polls(kit: Kit) -> None:
    polls = [asyncio.create_task(poll(kit.store, f"r{n}", [], 30)) for n in range(4)]
    await asyncio.sleep(0.3)  # all four are waiting
    _, jobs = await kit.run("a", "b", "c")
    for job in jobs:  # one commit each: three wake-ups
        await kit.store.queue_job(job.id, [JobInstance(job.name, None)])
    deadline = time.monotonic() + 5
    while sum(p.done() for p in polls) < len(jobs) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(QUIET)
    done = [p for p in polls if p.done()]
    assert sorted([p.result() for p in done]) == sorted(job.id for job in jobs)
    (waiting,) = [p for p in polls if not p.done()]
    waiting.cancel()


async def test_a_woken_poll_that_ends_without_trying_passes_its_wake_up_on(kit: Kit) -> None:
    assert await kit.store.acquire_job("r", [], 60) is None

    async def walks_away() -> None:
        await kit.store.wait_for_queued(30)  # and ends without trying to take anything

    gone = asyncio.create_task(walks_away())
    await asyncio.sleep(0.05)
    taker = asyncio.create_task(poll(kit.store, "taker", [], 30))
    await asyncio.sleep(0.05)
    job = await kit.queued()
    await asyncio.wait_for(gone, 5)
    assert await asyncio.wait_for(taker, 5) == job.id


async def cancel_timed(store: Store, timeout: float) -> float:
    started = time.monotonic()
    await store.wait_for_cancel(timeout)
    return time.monotonic() - started


async def test_a_running_jobs_cancel_wakes_a_held_heartbeat_and_nothing_else_does(
    kit: Kit,
) -> None:
    job = await kit.running()
    kit.store.cancels_looked()
    waiter = asyncio.create_task(cancel_timed(kit.store, 30))
    await asyncio.sleep(0.05)
    await kit.queued()  # a queued job, a new run: not a cancel
    await kit.store.renew_lease(job.id, job.lease_epoch, 60)
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await kit.store.cancel_run(job.run_id)
    assert await asyncio.wait_for(waiter, 5) < 5


async def test_a_cancel_since_the_last_look_returns_at_once(kit: Kit) -> None:
    job = await kit.running()
    kit.store.cancels_looked()
    await kit.store.cancel_job(job.id, "user asked")  # between the heartbeat's read and its wait
    assert await cancel_timed(kit.store, 30) < 5
    assert await cancel_timed(kit.store, QUIET) >= QUIET  # that commit is now seen


async def test_another_servers_cancel_wakes_a_postgres_heartbeat(
    place_of: object, clock: Clock
) -> None:
    place: Place = place_of("postgres")  # type: ignore[operator]
    listener, writer = await place.open(clock), await place.open(clock)
    job = await Kit(writer, clock).running()
    listener.cancels_looked()
    waiter = asyncio.create_task(cancel_timed(listener, 30))
    await asyncio.sleep(0.05)
    await writer.cancel_run(job.run_id)
    assert await asyncio.wait_for(waiter, 5) < 5
    await writer.close()
    await listener.close()

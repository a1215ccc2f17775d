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

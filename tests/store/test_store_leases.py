"""Leases: acquisition by labels, concurrent acquirers, renewal, the reaper and fencing."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tests.store.conftest import in_threads

from conveyor.engine.records import JobInstance, JobRecord, NewJob, NewRun
from conveyor.engine.states import Conclusion, JobStatus, StepStatus
from conveyor.engine.store import Store
from conveyor.errors import LeaseLost
from conveyor.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from tests.store.conftest import Clock, Kit, Place

TTL = 60.0


def plain_run() -> NewRun:
    return NewRun("ci.yml", "CI", "push", {}, None, None, {})


async def test_acquire_matches_labels_as_a_subset(kit: Kit) -> None:
    gpu = await kit.queued(labels=("linux", "gpu"))
    anywhere = await kit.queued(labels=())
    assert await kit.store.acquire_job("plain", ["linux"], TTL) == await kit.store.get_job(
        anywhere.id
    )
    assert await kit.store.acquire_job("plain", ["linux"], TTL) is None
    assert await kit.store.acquire_job("bare", [], TTL) is None
    got = await kit.store.acquire_job("big", ["gpu", "x64", "linux"], TTL)
    assert got is not None and got.id == gpu.id


async def test_acquire_takes_the_oldest_queued_job_and_leases_it(kit: Kit) -> None:
    first = await kit.queued()
    kit.clock.advance(1)
    await kit.queued()
    kit.clock.advance(1)
    got = await kit.store.acquire_job("runner-7", [], TTL)
    assert got is not None and got.id == first.id
    assert (got.status, got.lease_owner, got.lease_epoch) == (JobStatus.ACQUIRED, "runner-7", 1)
    assert got.lease_expires_at == kit.clock.now + TTL
    event = (await kit.events())[-1]
    assert (event.kind, event.run_id, event.job_id) == ("job.acquired", first.run_id, first.id)
    assert event.data == {
        "key": first.key,
        "status": "acquired",
        "conclusion": None,
        "runner": "runner-7",
        "epoch": 1,
    }
    assert event.created_at == kit.clock.now


async def test_acquire_can_be_limited_to_a_tenant(kit: Kit) -> None:
    await kit.store.create_tenant("acme", "Acme")
    _, (job,) = await kit.run("build", tenant_id="acme")
    await kit.store.queue_job(job.id, [JobInstance("Build", None)])
    assert await kit.store.acquire_job("r", [], TTL, tenant_id="default") is None
    got = await kit.store.acquire_job("r", [], TTL, tenant_id="acme")
    assert got is not None and got.tenant_id == "acme"


async def test_a_job_whose_handing_was_lost_is_handed_again_to_its_runner(kit: Kit) -> None:
    first, second = await kit.queued(), await kit.queued()
    got = await kit.store.acquire_job("runner-1", [], TTL, request="poll:a1")
    assert got is not None and got.id == first.id
    assert await kit.store.hand_again("runner-2", "poll:a1", TTL) is None  # not its call
    assert await kit.store.hand_again("runner-1", "poll:b2", TTL) is None  # another call
    kit.clock.advance(30)
    again = await kit.store.hand_again("runner-1", "poll:a1", TTL)
    assert again is not None and again.id == first.id
    assert (again.status, again.lease_owner, again.lease_epoch) == (
        JobStatus.ACQUIRED,
        "runner-1",
        got.lease_epoch,
    )
    assert again.lease_expires_at == kit.clock.now + TTL  # counted from now, as the runner does
    # Once: a call whose answers never get through cannot keep the lease alive.
    assert await kit.store.hand_again("runner-1", "poll:a1", TTL) is None
    assert (await kit.store.get_job(first.id)).lease_expires_at == again.lease_expires_at
    assert (await kit.store.get_job(second.id)).status is JobStatus.QUEUED


async def test_a_started_job_is_never_handed_again(kit: Kit) -> None:
    await kit.queued()
    got = await kit.store.acquire_job("runner-1", [], TTL, request="poll:a1")
    assert got is not None
    await kit.store.start_job(got.id, got.lease_epoch)  # the runner has it: its own business
    assert await kit.store.hand_again("runner-1", "poll:a1", TTL) is None


async def test_a_job_whose_lease_ran_out_is_not_handed_again(kit: Kit) -> None:
    await kit.queued()
    got = await kit.store.acquire_job("runner-1", [], TTL, request="poll:a1")
    assert got is not None
    kit.clock.advance(TTL + 1)
    assert await kit.store.hand_again("runner-1", "poll:a1", TTL) is None  # the reaper's now
    assert [job.id for job in await kit.store.reap_expired(max_retries=3)] == [got.id]
    assert await kit.store.hand_again("runner-1", "poll:a1", TTL) is None
    assert (await kit.store.get_job(got.id)).status is JobStatus.QUEUED


async def test_lease_ttl_must_be_positive(kit: Kit) -> None:
    job = await kit.acquired()
    with pytest.raises(ValueError, match="positive"):
        await kit.store.acquire_job("r", [], 0)
    with pytest.raises(ValueError, match="positive"):
        await kit.store.renew_lease(job.id, job.lease_epoch, -1)


async def _acquire_all(store: Store, n: int) -> list[str]:
    got = []
    while (job := await store.acquire_job(f"r{n}", [], TTL)) is not None:
        got.append(job.id)
    return got


async def queued_jobs(store: Store, count: int) -> list[JobRecord]:
    _, jobs = await store.create_run(
        plain_run(), [NewJob(f"j{n}", f"J{n}", (), ()) for n in range(count)]
    )
    for job in jobs:
        await store.queue_job(job.id, [JobInstance(job.name, None)])
    return jobs


async def test_concurrent_acquirers_never_share_a_job(shared: Place, clock: Clock) -> None:
    store = await shared.open(clock)
    jobs = await queued_jobs(store, 60)
    results = in_threads(shared, clock, 4, _acquire_all)
    taken = [job_id for got in results for job_id in got]
    assert sorted(taken) == sorted(job.id for job in jobs)
    assert all(job.lease_epoch == 1 for job in await store.list_jobs(jobs[0].run_id))
    assert [e.kind for e in await store.events_after(0, 1000)].count("job.acquired") == 60
    await store.close()


async def test_acquirers_sharing_one_store_never_share_a_job(tmp_path: Path) -> None:
    """A SQLite store may be shared between threads (each with its own event loop)."""
    store = await SqliteStore.open(str(tmp_path / "c.db"))
    jobs = await queued_jobs(store, 60)
    results: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(len(results))

    def acquire(n: int) -> None:
        start.wait()
        results[n] = asyncio.run(_acquire_all(store, n))

    threads = [threading.Thread(target=acquire, args=(n,)) for n in range(len(results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(job_id for got in results for job_id in got) == sorted(j.id for j in jobs)
    await store.close()


async def test_renewal_extends_the_lease_and_reports_cancellation(kit: Kit) -> None:
    job = await kit.running()
    kit.clock.advance(TTL - 1)
    renewed = await kit.store.renew_lease(job.id, job.lease_epoch, TTL)
    assert renewed.lease_expires_at == kit.clock.now + TTL and not renewed.cancel_requested
    kit.clock.advance(TTL - 1)
    assert await kit.store.reap_expired(max_retries=3) == []
    await kit.store.cancel_run(job.run_id)
    assert (await kit.store.renew_lease(job.id, job.lease_epoch, TTL)).cancel_requested


async def test_reaper_requeues_then_fails_with_runner_lost(kit: Kit) -> None:
    await kit.running()
    assert await kit.store.reap_expired(max_retries=1) == []  # not expired yet
    kit.clock.advance(TTL + 1)

    (requeued,) = await kit.store.reap_expired(max_retries=1)
    assert (requeued.status, requeued.retry_count, requeued.lease_epoch) == (
        JobStatus.QUEUED,
        1,
        1,
    )
    assert requeued.lease_owner is None and requeued.lease_expires_at is None
    assert (await kit.events())[-1].kind == "job.requeued"

    again = await kit.store.acquire_job("runner-2", [], TTL)
    assert again is not None and again.lease_epoch == 2
    kit.clock.advance(TTL + 1)
    (lost,) = await kit.store.reap_expired(max_retries=1)
    assert (lost.status, lost.conclusion, lost.reason) == (
        JobStatus.FAILED,
        Conclusion.FAILURE,
        "runner lost",
    )
    assert (await kit.events())[-1].kind == "job.completed"
    assert await kit.store.reap_expired(max_retries=1) == []


async def test_a_lost_job_that_was_being_cancelled_ends_cancelled(kit: Kit) -> None:
    job = await kit.running()
    await kit.store.cancel_job(job.id, "user asked")
    kit.clock.advance(TTL + 1)
    (ended,) = await kit.store.reap_expired(max_retries=5)
    assert (ended.status, ended.conclusion) == (JobStatus.CANCELLED, Conclusion.CANCELLED)


async def test_concurrent_reapers_take_each_lease_once(shared: Place, clock: Clock) -> None:
    store = await shared.open(clock)
    for _ in await queued_jobs(store, 20):
        assert await store.acquire_job("r", [], TTL) is not None
    clock.advance(TTL + 1)

    async def reap(other: Store, n: int) -> int:
        return len(await other.reap_expired(max_retries=3))

    assert sum(in_threads(shared, clock, 3, reap)) == 20
    events = [e.kind for e in await store.events_after(0, 1000)]
    assert events.count("job.requeued") == 20
    await store.close()


async def test_a_stale_epoch_is_fenced_off_and_leaves_no_trace(kit: Kit) -> None:
    job = await kit.running()
    epoch = job.lease_epoch
    await kit.store.start_step(job.id, epoch, 0, "build", "Build")
    await kit.store.append_log(job.id, epoch, [(0, "before")])
    kit.clock.advance(TTL + 1)
    await kit.store.reap_expired(max_retries=3)

    async def stale_writes() -> None:
        ok = Conclusion.SUCCESS
        calls = [
            lambda: kit.store.renew_lease(job.id, epoch, TTL),
            lambda: kit.store.start_job(job.id, epoch),
            lambda: kit.store.start_step(job.id, epoch, 1, None, "Next"),
            lambda: kit.store.finish_step(job.id, epoch, 0, StepStatus.COMPLETED, ok, ok, {}),
            lambda: kit.store.append_log(job.id, epoch, [(0, "ghost")]),
            lambda: kit.store.finish_job(job.id, epoch, JobStatus.COMPLETED, ok, {}),
        ]
        for call in calls:
            with pytest.raises(LeaseLost):
                await call()

    steps, log, events = (
        await kit.store.list_steps(job.id),
        await kit.store.read_log(job.id),
        await kit.events(),
    )
    await stale_writes()  # re-queued: the epoch is unchanged but the lease is gone
    fresh = await kit.store.acquire_job("runner-2", [], TTL)
    assert fresh is not None and fresh.lease_epoch == epoch + 1
    events.append((await kit.events())[-1])
    await stale_writes()  # re-acquired: the old epoch is stale
    assert await kit.store.list_steps(job.id) == steps
    assert await kit.store.read_log(job.id) == log
    assert await kit.events() == events
    await kit.store.start_job(fresh.id, fresh.lease_epoch)  # the new holder is unaffected

"""Artifacts: one per name and run, uploaded under the job's lease, replaced by its retry only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from tests.store.conftest import Kit, in_threads

from conveyor.engine.records import ArtifactRecord, JobInstance, JobRecord
from conveyor.engine.states import Conclusion, JobStatus
from conveyor.engine.store import Store
from conveyor.errors import Conflict, LeaseLost, NotFound

if TYPE_CHECKING:
    from tests.store.conftest import Clock, Place

TTL = 60.0
SQL = "x'); DROP TABLE artifacts; -- \" % _ \\ %s %(x)s ?"
UNICODE = "naïve 🚀 日本語 \u202eevil\u202c e\u0301"


async def leased(kit: Kit, *keys: str, **changes: Any) -> list[JobRecord]:
    """A run with a job per key, each queued and then acquired, in order."""
    _, jobs = await kit.run(*keys, **changes)
    return [await lease(kit.store, job) for job in jobs]


async def lease(store: Store, job: JobRecord) -> JobRecord:
    (queued,) = await store.queue_job(job.id, [JobInstance(job.name, None)])
    acquired = await store.acquire_job("runner-1", [], TTL)
    assert acquired is not None and acquired.id == queued.id
    return acquired


async def retried(kit: Kit, job: JobRecord) -> JobRecord:
    """The job's lease runs out alone; the reaper re-queues it and another runner takes it."""
    await kit.store.renew_lease(job.id, job.lease_epoch, 1.0)
    kit.clock.advance(2.0)
    assert [j.id for j in await kit.store.reap_expired(max_retries=3)] == [job.id]
    again = await kit.store.acquire_job("runner-2", [], TTL)
    assert again is not None and (again.id, again.lease_epoch) == (job.id, job.lease_epoch + 1)
    return again


async def test_an_artifact_is_recorded_with_the_job_and_epoch_that_uploaded_it(kit: Kit) -> None:
    store = kit.store
    build, test = await leased(kit, "build", "test")
    (elsewhere,) = await leased(kit, "build")
    assert (
        await store.add_artifact(build.id, build.lease_epoch, "dist", 1234, "/a/dist.tar") is None
    )
    assert await store.add_artifact(build.id, build.lease_epoch, "coverage", 0, "/a/c.tar") is None
    assert await store.add_artifact(elsewhere.id, elsewhere.lease_epoch, "dist", 5, "/b") is None
    dist = await store.get_artifact(build.run_id, "dist")
    assert dist == ArtifactRecord(
        run_id=build.run_id,
        name="dist",
        size=1234,
        path="/a/dist.tar",
        created_at=kit.clock.now,
        job_key="build",
        job_id=build.id,
        epoch=build.lease_epoch,
    )
    for job in (test, build):  # another job, or the same execution again: the name is taken
        with pytest.raises(Conflict, match="already has an artifact 'dist'"):
            await store.add_artifact(job.id, job.lease_epoch, "dist", 1, "/elsewhere")
    assert await store.get_artifact(build.run_id, "dist") == dist
    assert [a.name for a in await store.list_artifacts(build.run_id)] == ["coverage", "dist"]
    assert (await store.get_artifact(elsewhere.run_id, "dist")).size == 5
    with pytest.raises(NotFound):
        await store.get_artifact(build.run_id, "missing")
    with pytest.raises(NotFound):
        await store.add_artifact("ghost", 1, "x", 1, "/x")
    with pytest.raises(NotFound):
        await store.list_artifacts("ghost")
    big = 5 * 1024**4  # sizes beyond 32 bits
    await store.add_artifact(test.id, test.lease_epoch, "huge", big, "/h")
    assert (await store.get_artifact(test.run_id, "huge")).size == big


async def test_hostile_names_and_paths_are_stored_exactly(kit: Kit) -> None:
    (job,) = await leased(kit, "build")
    for name in (SQL, UNICODE):
        await kit.store.add_artifact(job.id, job.lease_epoch, name, 1, f"/{name}/{SQL}")
        found = await kit.store.get_artifact(job.run_id, name)
        assert (found.name, found.path) == (name, f"/{name}/{SQL}")
    assert len(await kit.store.list_artifacts(job.run_id)) == 2


async def test_a_retry_of_the_job_replaces_its_earlier_executions_artifact(kit: Kit) -> None:
    store = kit.store
    (first,) = await leased(kit, "build")
    await store.add_artifact(first.id, first.lease_epoch, "dist", 10, "/e1/dist.tar")
    await store.add_artifact(first.id, first.lease_epoch, "docs", 20, "/e1/docs.tar")
    second = await retried(kit, first)

    assert await store.add_artifact(second.id, second.lease_epoch, "dist", 11, "/e2/dist.tar") == (
        "/e1/dist.tar"
    )
    dist = await store.get_artifact(first.run_id, "dist")
    assert (dist.size, dist.path, dist.created_at, dist.job_id, dist.epoch) == (
        11,
        "/e2/dist.tar",
        kit.clock.now,
        first.id,
        second.lease_epoch,
    )
    with pytest.raises(Conflict):  # the same execution again
        await store.add_artifact(second.id, second.lease_epoch, "dist", 12, "/e2/again.tar")
    with pytest.raises(LeaseLost):  # the earlier execution, late
        await store.add_artifact(first.id, first.lease_epoch, "dist", 13, "/e1/late.tar")
    assert await store.get_artifact(first.run_id, "dist") == dist
    assert (await store.get_artifact(first.run_id, "docs")).path == "/e1/docs.tar"


async def test_another_job_never_replaces_an_artifact_even_with_a_later_epoch(kit: Kit) -> None:
    """Matrix instances share their key; the job that uploaded the name keeps it."""
    store = kit.store
    _, (job,) = await kit.run("build")
    one, two = await store.queue_job(
        job.id, [JobInstance("Build (a)", {"os": "a"}), JobInstance("Build (b)", {"os": "b"})]
    )
    a = await store.acquire_job("runner-1", [], TTL)
    b = await store.acquire_job("runner-1", [], TTL)
    assert a is not None and b is not None and {a.id, b.id} == {one.id, two.id}
    await store.add_artifact(a.id, a.lease_epoch, "dist", 1, "/a")
    b = await retried(kit, b)
    assert b.lease_epoch > a.lease_epoch
    with pytest.raises(Conflict):
        await store.add_artifact(b.id, b.lease_epoch, "dist", 2, "/b")
    assert (await store.get_artifact(a.run_id, "dist")).path == "/a"


async def test_an_upload_without_the_lease_is_refused_and_leaves_no_trace(kit: Kit) -> None:
    store = kit.store
    (job,) = await leased(kit, "build")
    epoch = job.lease_epoch

    async def refused(upload_epoch: int) -> None:
        events = await kit.events()
        with pytest.raises(LeaseLost):
            await store.add_artifact(job.id, upload_epoch, "dist", 1, "/x")
        assert await store.list_artifacts(job.run_id) == []
        assert await kit.events() == events

    await store.start_job(job.id, epoch)
    kit.clock.advance(TTL + 1)
    await store.reap_expired(max_retries=3)
    await refused(epoch)  # re-queued: the epoch is unchanged but the lease is gone
    fresh = await store.acquire_job("runner-2", [], TTL)
    assert fresh is not None and fresh.lease_epoch == epoch + 1
    await refused(epoch)  # re-acquired: the old epoch is stale
    await refused(epoch + 2)  # an epoch not handed out yet
    await store.start_job(job.id, fresh.lease_epoch)
    await store.finish_job(job.id, fresh.lease_epoch, JobStatus.COMPLETED, Conclusion.SUCCESS, {})
    await refused(fresh.lease_epoch)  # ended: its last epoch holds nothing


async def test_a_rerun_of_failed_jobs_keeps_the_artifacts_of_the_jobs_it_carries(
    kit: Kit,
) -> None:
    store = kit.store
    build, test = await leased(kit, "build", "test")
    await store.add_artifact(build.id, build.lease_epoch, "dist", 10, "/a/dist.tar")
    await store.add_artifact(test.id, test.lease_epoch, "logs", 20, "/a/logs.tar")
    await store.add_artifact(build.id, build.lease_epoch, "docs", 30, "/a/docs.tar")
    (again,) = await leased(
        kit, "test", attempt=2, carried_from=build.run_id, carried_jobs=("build",)
    )
    kept = await store.list_artifacts(again.run_id)
    assert [(a.run_id, a.name, a.size, a.path, a.job_key) for a in kept] == [
        (again.run_id, "dist", 10, "/a/dist.tar", "build"),
        (again.run_id, "docs", 30, "/a/docs.tar", "build"),
    ]
    # the job that runs again uploads its own anew, and cannot replace a carried one
    await store.add_artifact(again.id, again.lease_epoch, "logs", 21, "/b/logs.tar")
    with pytest.raises(Conflict):
        await store.add_artifact(again.id, again.lease_epoch, "dist", 11, "/b/dist.tar")
    assert len(await store.list_artifacts(build.run_id)) == 3


async def test_jobs_uploading_one_name_at_once_record_it_once(shared: Place, clock: Clock) -> None:
    store = await shared.open(clock)
    jobs = await leased(Kit(store, clock), "a", "b", "c", "d")
    await store.close()

    async def upload(other: Store, n: int) -> bool:
        job = jobs[n]
        try:
            await other.add_artifact(job.id, job.lease_epoch, "dist", n, f"/{n}")
        except Conflict:
            return False
        return True

    won = in_threads(shared, clock, len(jobs), upload)
    assert sum(won) == 1
    store = await shared.open(clock)
    (dist,) = await store.list_artifacts(jobs[0].run_id)
    assert (dist.job_id, dist.path) == (jobs[won.index(True)].id, f"/{won.index(True)}")
    await store.close()

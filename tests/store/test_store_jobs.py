"""Every job transition, allowed and forbidden: a refusal is typed and leaves no trace."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pytest

from conveyor.engine.records import JobInstance, JobRecord
from conveyor.engine.states import Conclusion, JobStatus
from conveyor.engine.store import Store
from conveyor.errors import Conflict, LeaseLost, NotFound

if TYPE_CHECKING:
    from tests.store.conftest import Kit

J = JobStatus
Op = Callable[[Store, JobRecord], Awaitable[object]]


def finish(status: JobStatus, conclusion: Conclusion) -> Op:
    return lambda s, j: s.finish_job(j.id, j.lease_epoch, status, conclusion, {"out": "1"})


# operation -> (the statuses it succeeds from, what it raises from the others)
OPERATIONS: dict[str, tuple[Op, set[JobStatus], type[Exception]]] = {
    "queue": (lambda s, j: s.queue_job(j.id, [JobInstance("B", None)]), {J.PENDING}, Conflict),
    "skip": (lambda s, j: s.skip_job(j.id, "if: false"), {J.PENDING}, Conflict),
    "carry_over": (
        lambda s, j: s.carry_over_job(j.id, Conclusion.SUCCESS, {"version": "7"}),
        {J.PENDING},
        Conflict,
    ),
    "fail_pending": (lambda s, j: s.fail_pending(j.id, "bad matrix"), {J.PENDING}, Conflict),
    "cancel": (
        lambda s, j: s.cancel_job(j.id, "fail-fast"),
        {J.PENDING, J.QUEUED, J.ACQUIRED, J.RUNNING},
        Conflict,
    ),
    "start": (lambda s, j: s.start_job(j.id, j.lease_epoch), {J.ACQUIRED}, LeaseLost),
    "renew": (
        lambda s, j: s.renew_lease(j.id, j.lease_epoch, 60),
        {J.ACQUIRED, J.RUNNING},
        LeaseLost,
    ),
    "finish-completed": (finish(J.COMPLETED, Conclusion.SUCCESS), {J.RUNNING}, LeaseLost),
    "finish-failed": (finish(J.FAILED, Conclusion.FAILURE), {J.ACQUIRED, J.RUNNING}, LeaseLost),
    "finish-cancelled": (
        finish(J.CANCELLED, Conclusion.CANCELLED),
        {J.ACQUIRED, J.RUNNING},
        LeaseLost,
    ),
}
# A runner write on a leased job in the wrong status is a plain Conflict: the lease is fine.
LEASED_BUT_WRONG = {("start", J.RUNNING), ("finish-completed", J.ACQUIRED)}


@pytest.mark.parametrize("status", list(JobStatus))
@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_transition(kit: Kit, operation: str, status: JobStatus) -> None:
    call, sources, refusal = OPERATIONS[operation]
    job = await kit.job_in(status)
    before, events = await kit.store.get_job(job.id), await kit.events()
    if status in sources:
        kit.clock.advance(1)
        await call(kit.store, job)
        assert await kit.store.get_job(job.id) != before
        new = (await kit.events())[len(events) :]
        expected = [] if operation == "renew" else [job.id]  # heartbeats write no event
        assert [e.job_id for e in new if e.job_id is not None] == expected
        return
    if (operation, status) in LEASED_BUT_WRONG:
        refusal = Conflict
    with pytest.raises(Conflict) as raised:
        await call(kit.store, job)
    assert type(raised.value) is refusal
    assert await kit.store.get_job(job.id) == before
    assert await kit.events() == events


async def test_acquire_takes_only_queued_jobs(kit: Kit) -> None:
    for status in JobStatus:
        if status is not J.QUEUED:
            await kit.job_in(status)
    assert await kit.store.acquire_job("r", [], 60) is None
    queued = await kit.queued()
    acquired = await kit.store.acquire_job("r", [], 60)
    assert acquired is not None and acquired.id == queued.id


async def test_queue_job_turns_one_pending_row_into_its_instances(kit: Kit) -> None:
    run, (build, other) = await kit.run("build", "other", labels=("linux",))
    instances = [
        JobInstance("Build (1)", {"os": "linux"}, {"steps": [1]}),
        JobInstance("Build (2)", {"os": "mac"}, {"steps": [2]}, labels=("macos",)),
        JobInstance("Build (3)", {"os": "win"}),
    ]
    queued = await kit.store.queue_job(build.id, instances)
    assert queued[0].id == build.id
    assert [(j.key, j.name, j.matrix, j.spec, j.labels) for j in queued] == [
        ("build", "Build (1)", {"os": "linux"}, {"steps": [1]}, ("linux",)),
        ("build", "Build (2)", {"os": "mac"}, {"steps": [2]}, ("macos",)),
        ("build", "Build (3)", {"os": "win"}, {}, ("linux",)),
    ]
    assert all(j.status is J.QUEUED and j.queued_at == kit.clock.now for j in queued)
    assert all(j.needs == build.needs and j.run_id == run.id for j in queued)
    assert [j.id for j in await kit.store.list_jobs(run.id)] == [build.id, other.id] + [
        j.id for j in queued[1:]
    ]
    events = (await kit.events())[1:]
    assert [(e.kind, e.job_id) for e in events] == [("job.queued", j.id) for j in queued]
    with pytest.raises(ValueError, match="at least one"):
        await kit.store.queue_job(other.id, [])


async def test_ending_states_record_why(kit: Kit) -> None:
    _, (a, b) = await kit.run("a", "b")
    skipped = await kit.store.skip_job(a.id, "if: false")
    failed = await kit.store.fail_pending(b.id, "matrix: not a list")
    assert (skipped.status, skipped.conclusion, skipped.reason) == (
        J.SKIPPED,
        Conclusion.SKIPPED,
        "if: false",
    )
    assert (failed.status, failed.conclusion, failed.reason) == (
        J.FAILED,
        Conclusion.FAILURE,
        "matrix: not a list",
    )
    assert failed.completed_at == kit.clock.now


async def test_finish_job_records_outputs_and_ends_the_lease(kit: Kit) -> None:
    job = await kit.running()
    kit.clock.advance(3)
    done = await kit.store.finish_job(
        job.id, job.lease_epoch, J.COMPLETED, Conclusion.SUCCESS, {"version": "1.2"}
    )
    assert done.outputs == {"version": "1.2"} and done.lease_expires_at is None
    assert done.completed_at == kit.clock.now and done.lease_owner == "runner-1"
    with pytest.raises(ValueError, match="cannot end as"):
        await kit.store.finish_job(job.id, job.lease_epoch, J.QUEUED, Conclusion.SUCCESS, {})


async def test_cancelling_a_leased_job_twice_asks_once(kit: Kit) -> None:
    job = await kit.running()
    first = await kit.store.cancel_job(job.id, "fail-fast")
    second = await kit.store.cancel_job(job.id, "again")
    assert first.cancel_requested and second == first
    assert (await kit.kinds()).count("job.cancel_requested") == 1


async def test_carry_over_completes_a_pending_job_with_the_previous_outputs(kit: Kit) -> None:
    run, (job,) = await kit.run("build")
    kit.clock.advance(2)
    carried = await kit.store.carry_over_job(job.id, Conclusion.SUCCESS, {"version": "7"})
    assert (carried.status, carried.conclusion, carried.outputs) == (
        J.COMPLETED,
        Conclusion.SUCCESS,
        {"version": "7"},
    )
    assert carried.reason == "carried over from the previous attempt"
    assert carried.completed_at == kit.clock.now and carried.lease_epoch == 0
    assert await kit.store.get_job(job.id) == carried
    event = (await kit.events())[-1]
    assert (event.kind, event.run_id, event.job_id) == ("job.completed", run.id, job.id)
    assert event.data["conclusion"] == "success"
    done = await kit.store.complete_run(run.id, Conclusion.SUCCESS)
    assert done.started_at is None  # nothing ran in this attempt


@pytest.mark.parametrize("conclusion", [Conclusion.FAILURE, Conclusion.CANCELLED])
async def test_only_a_success_is_carried_over(kit: Kit, conclusion: Conclusion) -> None:
    _, (job,) = await kit.run("build")
    events = await kit.events()
    with pytest.raises(ValueError, match="only a successful job is carried over"):
        await kit.store.carry_over_job(job.id, conclusion, {})
    assert await kit.store.get_job(job.id) == job
    assert await kit.events() == events


async def test_carrying_over_an_unknown_job_is_not_found(kit: Kit) -> None:
    with pytest.raises(NotFound):
        await kit.store.carry_over_job("nope", Conclusion.SUCCESS, {})

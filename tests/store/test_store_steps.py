"""Steps: every transition, skipped steps without a start, and steps across retries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pytest

from conveyor.engine.records import JobRecord
from conveyor.engine.states import Conclusion, StepStatus
from conveyor.engine.store import Store
from conveyor.errors import Conflict

if TYPE_CHECKING:
    from tests.store.conftest import Kit

S = StepStatus
OK, FAIL, SKIP = Conclusion.SUCCESS, Conclusion.FAILURE, Conclusion.SKIPPED
StepOp = Callable[[Store, JobRecord], Awaitable[None]]


def finish(status: StepStatus, outcome: Conclusion) -> StepOp:
    return lambda s, j: s.finish_step(j.id, j.lease_epoch, 0, status, outcome, outcome, {"o": "v"})


STEP_OPERATIONS: dict[str, tuple[StepOp, set[StepStatus]]] = {
    "start": (lambda s, j: s.start_step(j.id, j.lease_epoch, 0, "b", "Build"), {S.PENDING}),
    "finish-completed": (finish(S.COMPLETED, OK), {S.RUNNING}),
    "finish-failed": (finish(S.FAILED, FAIL), {S.PENDING, S.RUNNING}),
    "finish-skipped": (finish(S.SKIPPED, SKIP), {S.PENDING}),
}
REACH: dict[StepStatus, list[str]] = {
    S.PENDING: [],
    S.RUNNING: ["start"],
    S.COMPLETED: ["start", "finish-completed"],
    S.FAILED: ["start", "finish-failed"],
    S.SKIPPED: ["finish-skipped"],
}


@pytest.mark.parametrize("status", list(StepStatus))
@pytest.mark.parametrize("operation", list(STEP_OPERATIONS))
async def test_step_transition(kit: Kit, operation: str, status: StepStatus) -> None:
    job = await kit.running()
    for step in REACH[status]:
        await STEP_OPERATIONS[step][0](kit.store, job)
    call, sources = STEP_OPERATIONS[operation]
    before, events = await kit.store.list_steps(job.id), await kit.events()
    if status in sources:
        kit.clock.advance(1)
        await call(kit.store, job)
        (step,) = await kit.store.list_steps(job.id)
        assert step.status != status and step.epoch == job.lease_epoch
        assert [e.kind for e in await kit.events()][len(events) :] == [
            "step.started" if operation == "start" else "step.completed"
        ]
        return
    with pytest.raises(Conflict) as raised:
        await call(kit.store, job)
    assert type(raised.value) is Conflict
    assert await kit.store.list_steps(job.id) == before
    assert await kit.events() == events


async def test_a_step_records_times_results_and_outputs(kit: Kit) -> None:
    job = await kit.running()
    await kit.store.start_step(job.id, job.lease_epoch, 0, "compile", "Compile")
    started = kit.clock.now
    kit.clock.advance(2.5)
    await kit.store.finish_step(
        job.id, job.lease_epoch, 0, S.COMPLETED, FAIL, OK, {"artifact": "a.tgz"}
    )
    await kit.store.finish_step(
        job.id, job.lease_epoch, 1, S.SKIPPED, SKIP, SKIP, {}, step_id="deploy", name="Deploy"
    )
    compiled, deploy = await kit.store.list_steps(job.id)
    assert (compiled.index, compiled.step_id, compiled.name) == (0, "compile", "Compile")
    assert (compiled.status, compiled.outcome, compiled.conclusion) == (S.COMPLETED, FAIL, OK)
    assert compiled.outputs == {"artifact": "a.tgz"}
    assert (compiled.started_at, compiled.completed_at) == (started, kit.clock.now)
    assert (deploy.index, deploy.step_id, deploy.name, deploy.status) == (
        1,
        "deploy",
        "Deploy",
        S.SKIPPED,
    )
    assert deploy.started_at is None


async def test_finish_step_takes_only_final_statuses(kit: Kit) -> None:
    job = await kit.running()
    with pytest.raises(ValueError, match="cannot end as"):
        await kit.store.finish_step(job.id, job.lease_epoch, 0, S.RUNNING, None, None, {})


async def test_a_retry_rewrites_steps_and_keeps_the_earlier_attempts_results(kit: Kit) -> None:
    job = await kit.running()
    await kit.store.start_step(job.id, job.lease_epoch, 0, "migrate", "Migrate")
    await kit.store.finish_step(job.id, job.lease_epoch, 0, S.COMPLETED, OK, OK, {"v": "7"})
    await kit.store.start_step(job.id, job.lease_epoch, 1, None, "Deploy")
    kit.clock.advance(61)
    await kit.store.reap_expired(max_retries=1)
    retry = await kit.store.acquire_job("runner-2", [], 60)
    assert retry is not None and retry.id == job.id
    retry = await kit.store.start_job(retry.id, retry.lease_epoch)

    earlier = await kit.store.list_steps(job.id)  # what the executor reads before it starts
    assert [(s.index, s.status, s.epoch) for s in earlier] == [
        (0, S.COMPLETED, 1),
        (1, S.RUNNING, 1),
    ]
    # A run-once step is restored, the other starts afresh: both count as PENDING now.
    await kit.store.finish_step(retry.id, retry.lease_epoch, 0, S.SKIPPED, OK, OK, {"v": "7"})
    await kit.store.start_step(retry.id, retry.lease_epoch, 1, None, "Deploy")
    restored, deploy = await kit.store.list_steps(job.id)
    assert (restored.status, restored.outputs, restored.epoch) == (S.SKIPPED, {"v": "7"}, 2)
    assert restored.name == "Migrate" and restored.started_at is None
    assert (deploy.status, deploy.epoch, deploy.completed_at) == (S.RUNNING, 2, None)

"""Writes that do several steps' worth in one transaction: `record_step`, a run-ending job."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from conveyor.engine.records import JobInstance, JobRecord, OutboxEvent
from conveyor.engine.states import Conclusion, JobStatus, RunStatus, StepStatus
from conveyor.errors import Conflict, LeaseLost

if TYPE_CHECKING:
    from tests.store.conftest import Kit

OK, FAIL = Conclusion.SUCCESS, Conclusion.FAILURE
LINES = [(0, "compiling"), (None, "a job line"), (0, "done")]


def comparable(events: list[OutboxEvent]) -> list[tuple[str, object]]:
    return [(e.kind, e.data) for e in events]


async def test_record_step_does_what_start_append_and_finish_do(kit: Kit) -> None:
    apart, together = await kit.running(), await kit.running()
    mark = len(await kit.events())
    await kit.store.start_step(apart.id, apart.lease_epoch, 0, "b", "Build")
    await kit.store.append_log(apart.id, apart.lease_epoch, LINES)
    await kit.store.finish_step(
        apart.id, apart.lease_epoch, 0, StepStatus.COMPLETED, OK, OK, {"o": "v"}
    )
    separate = (await kit.events())[mark:]
    mark += len(separate)

    last = await kit.store.record_step(
        together.id,
        together.lease_epoch,
        0,
        "b",
        "Build",
        LINES,
        StepStatus.COMPLETED,
        OK,
        OK,
        {"o": "v"},
    )

    assert last == 3
    (step,) = await kit.store.list_steps(together.id)
    (expected,) = await kit.store.list_steps(apart.id)
    assert step == replace(expected, job_id=together.id)
    assert step.status is StepStatus.COMPLETED and step.outputs == {"o": "v"}
    logged = [(n.seq, n.step_index, n.text) for n in await kit.store.read_log(together.id)]
    assert logged == [(1, 0, "compiling"), (2, None, "a job line"), (3, 0, "done")]
    recorded = (await kit.events())[mark:]
    assert comparable(recorded) == comparable(separate)
    assert [e.kind for e in recorded] == ["step.started", "step.completed"]
    assert all(e.job_id == together.id for e in recorded)
    # numbering goes on from the record
    assert await kit.store.append_log(together.id, together.lease_epoch, [(1, "next")]) == 4


async def test_record_step_without_lines_answers_the_last_seq(kit: Kit) -> None:
    job = await kit.running()
    await kit.store.append_log(job.id, job.lease_epoch, [(None, "setup")])
    last = await kit.store.record_step(
        job.id, job.lease_epoch, 0, None, "Lint", [], StepStatus.FAILED, FAIL, FAIL, {}
    )
    assert last == 1
    (step,) = await kit.store.list_steps(job.id)
    assert (step.status, step.conclusion, step.step_id) == (StepStatus.FAILED, FAIL, None)


async def test_a_stale_epoch_records_nothing(kit: Kit) -> None:
    job = await kit.running()
    mark = len(await kit.events())
    with pytest.raises(LeaseLost):
        await kit.store.record_step(
            job.id, job.lease_epoch + 1, 0, "b", "Build", LINES, StepStatus.COMPLETED, OK, OK, {}
        )
    assert await kit.store.list_steps(job.id) == []
    assert await kit.store.read_log(job.id) == []
    assert len(await kit.events()) == mark
    assert await kit.store.append_log(job.id, job.lease_epoch, [(0, "first")]) == 1


async def test_a_step_recorded_twice_is_a_conflict_that_adds_no_lines(kit: Kit) -> None:
    job = await kit.running()

    async def record() -> int:
        return await kit.store.record_step(
            job.id, job.lease_epoch, 0, "b", "Build", LINES, StepStatus.COMPLETED, OK, OK, {}
        )

    await record()
    mark = len(await kit.events())
    with pytest.raises(Conflict) as raised:
        await record()
    assert not isinstance(raised.value, LeaseLost)
    assert len(await kit.store.read_log(job.id)) == len(LINES)
    assert len(await kit.events()) == mark


async def test_record_step_stores_nul_and_huge_lines(kit: Kit) -> None:
    job = await kit.running()
    huge = "x" * 2_000_000
    last = await kit.store.record_step(
        job.id,
        job.lease_epoch,
        0,
        "nul\x00id",
        "nul\x00name",
        [(0, "nul\x00byte"), (0, huge)],
        StepStatus.COMPLETED,
        OK,
        OK,
        {"out": "nul\x00value"},
    )
    assert last == 2
    assert [n.text for n in await kit.store.read_log(job.id)] == ["nul\ufffdbyte", huge]
    (step,) = await kit.store.list_steps(job.id)
    assert (step.step_id, step.name) == ("nul\ufffdid", "nul\ufffdname")
    assert step.outputs == {"out": "nul\x00value"}


async def _running(kit: Kit, job: JobRecord) -> JobRecord:
    await kit.store.queue_job(job.id, [JobInstance(job.name, None)])
    acquired = await kit.store.acquire_job("runner-1", [], 60)
    assert acquired is not None and acquired.id == job.id
    return await kit.store.start_job(job.id, acquired.lease_epoch)


async def _end(kit: Kit, job: JobRecord, conclusion: Conclusion) -> None:
    status = {OK: JobStatus.COMPLETED, FAIL: JobStatus.FAILED}.get(conclusion, JobStatus.CANCELLED)
    await kit.store.finish_job(job.id, job.lease_epoch, status, conclusion, {})


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (OK, OK, OK),
        (FAIL, Conclusion.CANCELLED, FAIL),
        (Conclusion.CANCELLED, OK, Conclusion.CANCELLED),
        (OK, FAIL, FAIL),
    ],
)
async def test_the_last_job_to_end_concludes_the_run(
    kit: Kit, first: Conclusion, second: Conclusion, expected: Conclusion
) -> None:
    run, (build, test) = await kit.run("build", "test")
    build, test = await _running(kit, build), await _running(kit, test)
    await _end(kit, build, first)
    assert (await kit.store.get_run(run.id)).status is not RunStatus.COMPLETED
    assert "run.completed" not in await kit.kinds()

    kit.clock.advance(5)
    await _end(kit, test, second)

    done = await kit.store.get_run(run.id)
    assert (done.status, done.conclusion) == (RunStatus.COMPLETED, expected)
    assert done.completed_at == kit.clock.now
    events = await kit.events()
    assert [e.kind for e in events[-2:]] == ["job.completed", "run.completed"]
    assert events[-1].data == {"status": "completed", "conclusion": expected.value}
    assert (events[-1].run_id, events[-1].job_id) == (run.id, None)
    with pytest.raises(Conflict):  # what the scheduler then meets, and ignores
        await kit.store.complete_run(run.id, expected)


async def test_a_skipped_job_counts_as_finished_and_not_as_a_failure(kit: Kit) -> None:
    run, (build, docs) = await kit.run("build", "docs")
    await kit.store.skip_job(docs.id, "if: false")
    await _end(kit, await _running(kit, build), OK)
    done = await kit.store.get_run(run.id)
    assert (done.status, done.conclusion) == (RunStatus.COMPLETED, OK)


async def test_a_pending_dependant_keeps_the_run_open(kit: Kit) -> None:
    run, (build, _deploy) = await kit.run("build", "deploy")
    await _end(kit, await _running(kit, build), FAIL)
    assert (await kit.store.get_run(run.id)).status is RunStatus.IN_PROGRESS
    assert "run.completed" not in await kit.kinds()

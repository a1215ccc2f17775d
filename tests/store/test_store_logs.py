"""Log lines: per-job numbering, paging, and hostile text anywhere text is stored."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from conveyor.engine.records import JobInstance, NewJob
from conveyor.engine.states import Conclusion, JobStatus, StepStatus
from conveyor.errors import StoreError

if TYPE_CHECKING:
    from tests.store.conftest import Kit

SQL = "x'); DROP TABLE jobs; -- \" % _ \\"
UNICODE = "naïve 🚀 日本語 \u202eevil\u202c e\u0301"


async def test_lines_are_numbered_per_job_from_one(kit: Kit) -> None:
    job = await kit.running()
    other = await kit.running()
    epoch = job.lease_epoch
    assert await kit.store.append_log(job.id, epoch, [(None, "setup"), (0, "a"), (0, "b")]) == 3
    assert await kit.store.append_log(other.id, other.lease_epoch, [(0, "elsewhere")]) == 1
    assert await kit.store.append_log(job.id, epoch, [(1, "c"), (1, "d")]) == 5
    assert await kit.store.append_log(job.id, epoch, []) == 5
    lines = await kit.store.read_log(job.id)
    assert [(line.seq, line.step_index, line.text) for line in lines] == [
        (1, None, "setup"),
        (2, 0, "a"),
        (3, 0, "b"),
        (4, 1, "c"),
        (5, 1, "d"),
    ]
    assert [line.seq for line in await kit.store.read_log(job.id, after_seq=2, limit=2)] == [3, 4]
    assert await kit.store.read_log(job.id, after_seq=5) == []
    assert await kit.store.read_log(job.id, limit=-1) == []


async def test_numbering_continues_across_attempts(kit: Kit) -> None:
    job = await kit.running()
    await kit.store.append_log(job.id, job.lease_epoch, [(0, "first try")])
    kit.clock.advance(61)
    await kit.store.reap_expired(max_retries=1)
    retry = await kit.store.acquire_job("runner-2", [], 60)
    assert retry is not None
    assert await kit.store.append_log(retry.id, retry.lease_epoch, [(0, "second try")]) == 2


async def test_a_large_batch_and_a_huge_line(kit: Kit) -> None:
    job = await kit.running()
    huge = "x" * 5_000_000
    batch = [(0, f"line {n}") for n in range(10_000)] + [(0, huge)]
    assert await kit.store.append_log(job.id, job.lease_epoch, batch) == 10_001
    (last,) = await kit.store.read_log(job.id, after_seq=10_000)
    assert last.text == huge


async def test_text_is_stored_exactly_except_what_no_database_can_hold(kit: Kit) -> None:
    job = await kit.running()
    texts = ["nul\x00byte", "lone \udcff surrogate", SQL, UNICODE, "", "trailing\r"]
    await kit.store.append_log(job.id, job.lease_epoch, [(0, t) for t in texts])
    assert [line.text for line in await kit.store.read_log(job.id)] == [
        "nul\ufffdbyte",
        "lone \ufffd surrogate",
        SQL,
        UNICODE,
        "",
        "trailing\r",
    ]


async def test_hostile_names_and_data_round_trip(kit: Kit) -> None:
    data = {SQL: [UNICODE, "nul\x00inside json", None, 1.5, True], "": {}}
    await kit.store.create_tenant(SQL, UNICODE)
    run, (job,) = await kit.store.create_run(
        kit.new_run(
            workflow_name=SQL,
            workflow_path=UNICODE,
            payload=data,
            inputs={"who": SQL},
            tenant_id=SQL,
            idempotency_key=SQL,
        ),
        [NewJob(SQL, UNICODE, (SQL,), (SQL, UNICODE), matrix=data, spec=data)],
    )
    assert (run.workflow_name, run.workflow_path, run.payload, run.inputs) == (
        SQL,
        UNICODE,
        data,
        {"who": SQL},
    )
    assert (job.key, job.name, job.needs, job.labels, job.matrix, job.spec) == (
        SQL,
        UNICODE,
        (SQL,),
        (SQL, UNICODE),
        data,
        data,
    )
    await kit.store.queue_job(job.id, [JobInstance(SQL, data, data)])
    leased = await kit.store.acquire_job(SQL, [UNICODE, SQL], 60)
    assert leased is not None and leased.lease_owner == SQL
    epoch = leased.lease_epoch
    await kit.store.start_job(job.id, epoch)
    await kit.store.start_step(job.id, epoch, 0, SQL, UNICODE)
    ok = Conclusion.SUCCESS
    await kit.store.finish_step(job.id, epoch, 0, StepStatus.COMPLETED, ok, ok, {SQL: UNICODE})
    done = await kit.store.finish_job(job.id, epoch, JobStatus.COMPLETED, ok, {SQL: "\x00"}, SQL)
    assert (done.outputs, done.reason) == ({SQL: "\x00"}, SQL)
    (step,) = await kit.store.list_steps(job.id)
    assert (step.step_id, step.name, step.outputs) == (SQL, UNICODE, {SQL: UNICODE})
    assert (await kit.store.get_job(job.id)).name == SQL


async def test_an_unstorable_key_is_a_store_error_and_writes_nothing(kit: Kit) -> None:
    with pytest.raises(StoreError, match="text cannot be stored"):
        await kit.run(idempotency_key="lone \udcff surrogate")
    assert await kit.events() == []

"""The outbox: one event per state change, in commit order; cursors move by compare-and-set."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from tests.store.conftest import in_threads

from conveyor.engine.records import EventKind, JobInstance
from conveyor.engine.states import Conclusion, JobStatus, StepStatus
from conveyor.engine.store import Store
from conveyor.errors import Conflict

if TYPE_CHECKING:
    from tests.store.conftest import Clock, Kit, Place


async def test_a_whole_run_emits_its_events_in_order(kit: Kit) -> None:
    run, (build, docs) = await kit.run("build", "docs")
    await kit.store.skip_job(docs.id, "if: false")
    await kit.store.queue_job(build.id, [JobInstance("Build", None)])
    job = await kit.store.acquire_job("runner-1", [], 60)
    assert job is not None
    await kit.store.start_job(job.id, job.lease_epoch)
    await kit.store.start_step(job.id, job.lease_epoch, 0, None, "make")
    await kit.store.append_log(job.id, job.lease_epoch, [(0, "ok")])  # not a state change
    ok = Conclusion.SUCCESS
    await kit.store.finish_step(job.id, job.lease_epoch, 0, StepStatus.COMPLETED, ok, ok, {})
    await kit.store.finish_job(job.id, job.lease_epoch, JobStatus.COMPLETED, ok, {})
    with pytest.raises(Conflict):  # the last job's end concluded the run
        await kit.store.complete_run(run.id, ok)

    events = await kit.events()
    assert [(e.kind, e.job_id) for e in events] == [
        (EventKind.RUN_CREATED, None),
        (EventKind.JOB_COMPLETED, docs.id),
        (EventKind.JOB_QUEUED, build.id),
        (EventKind.JOB_ACQUIRED, build.id),
        (EventKind.JOB_STARTED, build.id),
        (EventKind.RUN_STARTED, None),
        (EventKind.STEP_STARTED, build.id),
        (EventKind.STEP_COMPLETED, build.id),
        (EventKind.JOB_COMPLETED, build.id),
        (EventKind.RUN_COMPLETED, None),
    ]
    assert all(e.run_id == run.id and e.created_at == kit.clock.now for e in events)
    assert [e.id for e in events] == sorted({e.id for e in events})
    assert events[1].data == {"key": "docs", "status": "skipped", "conclusion": "skipped"}
    assert events[7].data == {"index": 0, "status": "completed", "conclusion": "success"}


async def test_events_page_after_a_cursor(kit: Kit) -> None:
    for _ in range(5):
        await kit.run()
    events = await kit.events()
    page = await kit.store.events_after(events[1].id, limit=2)
    assert page == events[2:4]
    assert await kit.store.events_after(events[-1].id) == []


async def test_cursors_move_only_from_where_they_are(kit: Kit) -> None:
    assert await kit.store.get_cursor("scheduler") == 0
    assert await kit.store.advance_cursor("scheduler", 0, 3)
    assert not await kit.store.advance_cursor("scheduler", 0, 4)
    assert await kit.store.get_cursor("scheduler") == 3
    assert await kit.store.advance_cursor("scheduler", 3, 5)
    assert not await kit.store.advance_cursor("scheduler", 3, 9)
    assert await kit.store.get_cursor("scheduler") == 5
    assert await kit.store.get_cursor("notifier") == 0
    assert not await kit.store.advance_cursor("notifier", 2, 3)
    assert await kit.store.get_cursor("notifier") == 0


async def test_two_schedulers_cannot_both_move_a_cursor(shared: Place, clock: Clock) -> None:
    one, two = await shared.open(clock), await shared.open(clock)
    for start in (0, 7):
        seen = (await one.get_cursor("scheduler"), await two.get_cursor("scheduler"))
        assert seen == (start, start)
        won = [
            await one.advance_cursor("scheduler", start, 7 if start == 0 else 9),
            await two.advance_cursor("scheduler", start, 8 if start == 0 else 10),
        ]
        assert won == [True, False]
    assert await two.get_cursor("scheduler") == 9
    await one.close()
    await two.close()


async def test_racing_schedulers_move_a_cursor_once(shared: Place, clock: Clock) -> None:
    async def race(store: Store, n: int) -> bool:
        return await store.advance_cursor("scheduler", 0, 100 + n)

    won = in_threads(shared, clock, 4, race)
    assert won.count(True) == 1
    store = await shared.open(clock)
    assert await store.get_cursor("scheduler") == 100 + won.index(True)
    await store.close()

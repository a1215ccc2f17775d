"""Writes that do several calls' worth in one transaction: `apply_report`, a run-ending job."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from conveyor.engine.records import JobInstance, JobRecord, OutboxEvent
from conveyor.engine.reports import (
    JobEnded,
    JobStarted,
    LogLines,
    ReportEvent,
    StepEnded,
    StepFinish,
    StepStarted,
)
from conveyor.engine.states import Conclusion, JobStatus, RunStatus, StepStatus
from conveyor.errors import Conflict, LeaseLost

if TYPE_CHECKING:
    from tests.store.conftest import Kit

OK, FAIL = Conclusion.SUCCESS, Conclusion.FAILURE
LINES = [(0, "compiling"), (None, "a job line"), (0, "done")]


def comparable(events: list[OutboxEvent]) -> list[tuple[str, object]]:
    return [(e.kind, e.data) for e in events]


def step(index: int, lines: list[tuple[int | None, str]], finish: StepFinish) -> list[ReportEvent]:
    """One whole step, as a runner reports a step that ended within a batch."""
    name = finish.name or f"step {index}"
    return [
        StepStarted(index, finish.step_id, name),
        LogLines(lines),
        StepEnded(index, finish),
    ]


BUILT = StepFinish(StepStatus.COMPLETED, OK, OK, {"o": "v"}, "b", "Build")


async def test_a_report_does_what_the_single_calls_do(kit: Kit) -> None:
    apart, together = await kit.acquired(), await kit.acquired()
    mark = len(await kit.events())
    await kit.store.start_job(apart.id, apart.lease_epoch)
    await kit.store.start_step(apart.id, apart.lease_epoch, 0, "b", "Build")
    await kit.store.append_log(apart.id, apart.lease_epoch, LINES)
    await kit.store.finish_step(
        apart.id,
        apart.lease_epoch,
        0,
        StepStatus.COMPLETED,
        OK,
        OK,
        {"o": "v"},
        step_id="b",
        name="Build",
    )
    await kit.store.finish_job(apart.id, apart.lease_epoch, JobStatus.COMPLETED, OK, {"x": "1"})
    separate = (await kit.events())[mark:]
    mark += len(separate)

    events = [JobStarted(), *step(0, LINES, BUILT), JobEnded(JobStatus.COMPLETED, OK, {"x": "1"})]
    last = await kit.store.apply_report(together.id, together.lease_epoch, events)

    assert last == 3
    (recorded_step,) = await kit.store.list_steps(together.id)
    (expected,) = await kit.store.list_steps(apart.id)
    assert recorded_step == replace(expected, job_id=together.id)
    assert recorded_step.status is StepStatus.COMPLETED and recorded_step.outputs == {"o": "v"}
    logged = [(n.seq, n.step_index, n.text) for n in await kit.store.read_log(together.id)]
    assert logged == [(1, 0, "compiling"), (2, None, "a job line"), (3, 0, "done")]
    job = await kit.store.get_job(together.id)
    assert (job.status, job.conclusion, dict(job.outputs)) == (JobStatus.COMPLETED, OK, {"x": "1"})
    reported = (await kit.events())[mark:]
    assert [e.kind for e in reported] == [
        "job.started",
        "run.started",
        "step.started",
        "step.completed",
        "job.completed",
        "run.completed",
    ]
    assert comparable(reported) == comparable(separate)
    assert [(e.run_id, e.job_id) for e in reported] == [
        (together.run_id, together.id),
        (together.run_id, None),
        *[(together.run_id, together.id)] * 3,
        (together.run_id, None),
    ]
    assert [e.id for e in reported] == sorted(e.id for e in reported)


async def test_a_whole_job_starts_its_run_and_the_last_one_concludes_it(kit: Kit) -> None:
    run, (build, test) = await kit.run("build", "test")
    for job in (build, test):
        await kit.store.queue_job(job.id, [JobInstance(job.name, None)])
    build = await kit.store.acquire_job("runner-1", [], 60) or build
    test = await kit.store.acquire_job("runner-2", [], 60) or test
    mark = len(await kit.events())
    failed = StepFinish(StepStatus.FAILED, FAIL, FAIL, {}, None, "Test")
    kit.clock.advance(1)
    await kit.store.apply_report(
        build.id,
        build.lease_epoch,
        [
            JobStarted(),
            *step(0, LINES, BUILT),
            *step(1, [], BUILT),
            JobEnded(JobStatus.COMPLETED, OK, {}),
        ],
    )
    opened = await kit.store.get_run(run.id)
    assert (opened.status, opened.started_at) == (RunStatus.IN_PROGRESS, kit.clock.now)
    assert [s.index for s in await kit.store.list_steps(build.id)] == [0, 1]

    kit.clock.advance(1)
    ending = [
        JobStarted(),
        StepStarted(0, None, "Test"),
        StepEnded(0, failed),
        JobEnded(JobStatus.FAILED, FAIL, {}, "it broke"),
    ]
    assert await kit.store.apply_report(test.id, test.lease_epoch, ending, seq=1) is None

    done = await kit.store.get_run(run.id)
    assert (done.status, done.conclusion) == (RunStatus.COMPLETED, FAIL)
    assert (done.started_at, done.completed_at) == (kit.clock.now - 1, kit.clock.now)
    ended = await kit.store.get_job(test.id)
    assert (ended.status, ended.reason, ended.started_at) == (
        JobStatus.FAILED,
        "it broke",
        kit.clock.now,
    )
    assert ended.lease_expires_at is None
    assert comparable((await kit.events())[mark:]) == [
        ("job.started", {"key": "build", "status": "running", "conclusion": None}),
        ("run.started", {"status": "in_progress"}),
        ("step.started", {"index": 0, "status": "running"}),
        ("step.completed", {"index": 0, "status": "completed", "conclusion": "success"}),
        ("step.started", {"index": 1, "status": "running"}),
        ("step.completed", {"index": 1, "status": "completed", "conclusion": "success"}),
        (
            "job.completed",
            {"key": "build", "status": "completed", "conclusion": "success", "reason": None},
        ),
        ("job.started", {"key": "test", "status": "running", "conclusion": None}),
        ("step.started", {"index": 0, "status": "running"}),
        ("step.completed", {"index": 0, "status": "failed", "conclusion": "failure"}),
        (
            "job.completed",
            {"key": "test", "status": "failed", "conclusion": "failure", "reason": "it broke"},
        ),
        ("run.completed", {"status": "completed", "conclusion": "failure", "group": None}),
    ]


async def test_a_whole_job_whose_step_this_lease_began_already_writes_nothing(kit: Kit) -> None:
    job = await kit.acquired()
    await kit.store.start_step(job.id, job.lease_epoch, 0, None, "Build")
    mark = len(await kit.events())
    whole = [JobStarted(), *step(0, LINES, BUILT), JobEnded(JobStatus.COMPLETED, OK, {})]
    with pytest.raises(Conflict, match="cannot start step 0"):
        await kit.store.apply_report(job.id, job.lease_epoch, whole)
    assert (await kit.store.get_job(job.id)).status is JobStatus.ACQUIRED
    (recorded,) = await kit.store.list_steps(job.id)
    assert recorded.status is StepStatus.RUNNING
    assert await kit.store.read_log(job.id) == []
    assert len(await kit.events()) == mark
    run = await kit.store.get_run(job.run_id)
    assert (run.status, run.started_at) == (RunStatus.QUEUED, None)


async def test_a_report_without_lines_answers_none_and_numbering_goes_on(kit: Kit) -> None:
    job = await kit.running()
    await kit.store.append_log(job.id, job.lease_epoch, [(None, "setup")])
    failed = StepFinish(StepStatus.FAILED, FAIL, FAIL, {}, None, "Lint")
    last = await kit.store.apply_report(
        job.id, job.lease_epoch, [StepStarted(0, None, "Lint"), StepEnded(0, failed)]
    )
    assert last is None
    (recorded,) = await kit.store.list_steps(job.id)
    assert (recorded.status, recorded.conclusion, recorded.step_id) == (
        StepStatus.FAILED,
        FAIL,
        None,
    )
    assert await kit.store.append_log(job.id, job.lease_epoch, [(1, "next")]) == 2


async def test_step_times_are_the_runners_but_never_in_the_future(kit: Kit) -> None:
    job = await kit.running()
    now = kit.clock.now
    events: list[ReportEvent] = [
        StepStarted(0, None, "early", at=now - 4.5),
        StepEnded(0, BUILT, at=now - 1.25),
        StepStarted(1, None, "ahead", at=now + 3600),
    ]
    await kit.store.apply_report(job.id, job.lease_epoch, events)
    first, second = await kit.store.list_steps(job.id)
    assert (first.started_at, first.completed_at) == (now - 4.5, now - 1.25)
    assert second.started_at == now


async def test_a_stale_epoch_reports_nothing(kit: Kit) -> None:
    job = await kit.acquired()
    mark = len(await kit.events())
    with pytest.raises(LeaseLost):
        await kit.store.apply_report(
            job.id, job.lease_epoch + 1, [JobStarted(), *step(0, LINES, BUILT)]
        )
    assert (await kit.store.get_job(job.id)).status is JobStatus.ACQUIRED
    assert await kit.store.list_steps(job.id) == []
    assert await kit.store.read_log(job.id) == []
    assert len(await kit.events()) == mark


async def test_a_refusal_midway_undoes_the_whole_report(kit: Kit) -> None:
    job = await kit.running()
    await kit.store.apply_report(job.id, job.lease_epoch, step(0, LINES, BUILT))
    mark = len(await kit.events())
    again = [*step(1, [(1, "new")], BUILT), *step(0, LINES, BUILT)]  # step 0 ended already
    with pytest.raises(Conflict) as raised:
        await kit.store.apply_report(job.id, job.lease_epoch, again)
    assert not isinstance(raised.value, LeaseLost)
    assert [s.index for s in await kit.store.list_steps(job.id)] == [0]
    assert len(await kit.store.read_log(job.id)) == len(LINES)
    assert len(await kit.events()) == mark


async def test_an_end_no_step_or_job_has_is_refused_before_anything_is_written(
    kit: Kit,
) -> None:
    job = await kit.running()
    mark = len(await kit.events())
    running = StepFinish(StepStatus.RUNNING, OK, OK, {})
    with pytest.raises(ValueError, match="cannot end"):
        await kit.store.apply_report(
            job.id, job.lease_epoch, [LogLines(LINES), StepEnded(0, running)]
        )
    with pytest.raises(ValueError, match="cannot end"):
        await kit.store.apply_report(
            job.id, job.lease_epoch, [LogLines(LINES), JobEnded(JobStatus.RUNNING, OK, {})]
        )
    assert await kit.store.read_log(job.id) == []
    assert len(await kit.events()) == mark


async def test_a_report_stores_nul_and_huge_lines(kit: Kit) -> None:
    job = await kit.running()
    huge = "x" * 2_000_000
    finish = StepFinish(
        StepStatus.COMPLETED, OK, OK, {"out": "nul\x00value"}, "nul\x00id", "nul\x00name"
    )
    last = await kit.store.apply_report(
        job.id, job.lease_epoch, step(0, [(0, "nul\x00byte"), (0, huge)], finish)
    )
    assert last == 2
    assert [n.text for n in await kit.store.read_log(job.id)] == ["nul\ufffdbyte", huge]
    (recorded,) = await kit.store.list_steps(job.id)
    assert (recorded.step_id, recorded.name) == ("nul\ufffdid", "nul\ufffdname")
    assert recorded.outputs == {"out": "nul\x00value"}


HOSTILE = [
    "emoji 🚀 and accents é",
    "quotes \" ' and a backslash \\ and \\u0041 spelled out",
    "control \x1b[31mred\x1b[0m\ttab",
    "nul\x00byte and a lone \ud800 surrogate",
    "",
]


async def test_a_whole_job_stores_any_text_as_sent(kit: Kit) -> None:
    job = await kit.acquired()
    finish = StepFinish(
        StepStatus.COMPLETED, OK, OK, {"out": "🚀\x00\\"}, "id \ud800", 'name 🚀 "x"'
    )
    report = [
        JobStarted(),
        *step(0, [(0, text) for text in HOSTILE], finish),
        JobEnded(JobStatus.COMPLETED, OK, {"o": "\x1b 🚀"}, None),
    ]
    assert await kit.store.apply_report(job.id, job.lease_epoch, report) == len(HOSTILE)
    stored = [n.text for n in await kit.store.read_log(job.id)]
    assert stored == [
        "emoji 🚀 and accents é",
        "quotes \" ' and a backslash \\ and \\u0041 spelled out",
        "control \x1b[31mred\x1b[0m\ttab",
        "nul\ufffdbyte and a lone \ufffd surrogate",
        "",
    ]
    (recorded,) = await kit.store.list_steps(job.id)
    assert (recorded.step_id, recorded.name) == ("id \ufffd", 'name 🚀 "x"')
    assert recorded.outputs == {"out": "🚀\x00\\"}
    ended = await kit.store.get_job(job.id)
    assert (ended.status, ended.outputs) == (JobStatus.COMPLETED, {"o": "\x1b 🚀"})


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
    assert events[-1].data == {"status": "completed", "conclusion": expected.value, "group": None}
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


async def test_a_numbered_report_sent_again_is_applied_once(kit: Kit) -> None:
    job = await kit.acquired()
    first = [JobStarted(), *step(0, LINES, BUILT)]
    assert await kit.store.apply_report(job.id, job.lease_epoch, first, seq=1) == 3
    mark = len(await kit.events())
    # the runner lost the answer and sends the same report again: it is answered, not applied
    assert await kit.store.apply_report(job.id, job.lease_epoch, first, seq=1) == 3
    assert len(await kit.store.read_log(job.id)) == len(LINES)
    assert len(await kit.events()) == mark
    lines: list[ReportEvent] = [LogLines([(None, "more")])]
    assert await kit.store.apply_report(job.id, job.lease_epoch, lines, seq=2) == 4
    assert await kit.store.apply_report(job.id, job.lease_epoch, lines, seq=2) == 4
    assert len(await kit.store.read_log(job.id)) == len(LINES) + 1


async def test_the_last_report_sent_again_after_the_job_ended_is_answered(kit: Kit) -> None:
    job = await kit.acquired()
    ending = [JobStarted(), JobEnded(JobStatus.COMPLETED, OK, {})]
    await kit.store.apply_report(job.id, job.lease_epoch, ending, seq=1)
    assert await kit.store.apply_report(job.id, job.lease_epoch, ending, seq=1) == 0
    with pytest.raises(LeaseLost):  # a new report after the end is refused as ever
        await kit.store.apply_report(job.id, job.lease_epoch, [LogLines(LINES)], seq=2)


async def test_report_numbers_start_again_with_each_lease(kit: Kit) -> None:
    job = await kit.acquired()
    await kit.store.apply_report(job.id, job.lease_epoch, [LogLines(LINES)], seq=5)
    kit.clock.advance(120)
    assert [j.id for j in await kit.store.reap_expired(3)] == [job.id]
    again = await kit.store.acquire_job("runner-2", [], 60)
    assert again is not None and again.lease_epoch == job.lease_epoch + 1
    with pytest.raises(LeaseLost):  # the old lease's number means nothing to the new one
        await kit.store.apply_report(job.id, job.lease_epoch, [LogLines(LINES)], seq=6)
    assert await kit.store.apply_report(again.id, again.lease_epoch, [JobStarted()], seq=1) is None


async def test_a_report_saying_anything_after_the_jobs_end_is_refused(kit: Kit) -> None:
    job = await kit.running()
    events: list[ReportEvent] = [JobEnded(JobStatus.COMPLETED, OK, {}), LogLines(LINES)]
    with pytest.raises(ValueError, match="after the job's end"):
        await kit.store.apply_report(job.id, job.lease_epoch, events)
    assert (await kit.store.get_job(job.id)).status is JobStatus.RUNNING


async def test_a_whole_step_in_a_retry_rewrites_the_earlier_attempts_row(kit: Kit) -> None:
    job = await kit.running()
    first = StepFinish(StepStatus.FAILED, FAIL, FAIL, {"try": "1"}, "t", "Test")
    await kit.store.apply_report(job.id, job.lease_epoch, step(0, [(0, "try 1")], first))
    kit.clock.advance(61)
    await kit.store.reap_expired(max_retries=1)
    retry = await kit.store.acquire_job("runner-2", [], 60)
    assert retry is not None and retry.lease_epoch == job.lease_epoch + 1
    second = StepFinish(StepStatus.COMPLETED, OK, OK, {"try": "2"}, "t", "")
    events = [JobStarted(), *step(0, [(0, "try 2")], second)]
    await kit.store.apply_report(retry.id, retry.lease_epoch, events)
    (recorded,) = await kit.store.list_steps(job.id)
    assert (recorded.status, recorded.outputs, recorded.epoch) == (
        StepStatus.COMPLETED,
        {"try": "2"},
        retry.lease_epoch,
    )
    assert recorded.name == "step 0"  # the start's name, as the end gave none
    assert recorded.started_at == recorded.completed_at == kit.clock.now


async def test_a_whole_step_for_a_step_already_running_is_refused(kit: Kit) -> None:
    job = await kit.running()
    await kit.store.start_step(job.id, job.lease_epoch, 0, None, "Build")
    mark = len(await kit.events())
    with pytest.raises(Conflict, match="cannot start step 0"):
        await kit.store.apply_report(job.id, job.lease_epoch, step(0, LINES, BUILT))
    (recorded,) = await kit.store.list_steps(job.id)
    assert recorded.status is StepStatus.RUNNING
    assert await kit.store.read_log(job.id) == []
    assert len(await kit.events()) == mark


async def test_a_report_then_the_runners_next_job_in_one_call(kit: Kit) -> None:
    job = await kit.acquired()
    waiting = await kit.queued(labels=["linux"])
    mark = len(await kit.events())
    events = [JobStarted(), *step(0, LINES, BUILT), JobEnded(JobStatus.COMPLETED, OK, {})]

    last, following = await kit.store.report_and_acquire(
        job.id, job.lease_epoch, events, seq=1, runner_id="runner-1", labels=["linux"], lease_ttl=60
    )

    assert last == 3 and following is not None
    assert (following.id, following.status, following.lease_owner) == (
        waiting.id,
        JobStatus.ACQUIRED,
        "runner-1",
    )
    assert following.lease_epoch == waiting.lease_epoch + 1
    assert following.lease_expires_at == kit.clock.now + 60
    assert (await kit.store.get_job(job.id)).status is JobStatus.COMPLETED
    reported = (await kit.events())[mark:]
    assert [e.kind for e in reported][-3:] == ["job.completed", "run.completed", "job.acquired"]
    acquired = reported[-1]
    assert (acquired.run_id, acquired.job_id) == (waiting.run_id, waiting.id)
    assert acquired.data == {
        "key": "build",
        "status": "acquired",
        "conclusion": None,
        "runner": "runner-1",
        "epoch": following.lease_epoch,
    }


async def test_a_report_then_nothing_when_no_job_is_queued_for_the_runner(kit: Kit) -> None:
    job = await kit.acquired()
    gpu = await kit.queued(labels=["gpu"])
    ending = [JobStarted(), JobEnded(JobStatus.COMPLETED, OK, {})]
    answer = await kit.store.report_and_acquire(
        job.id, job.lease_epoch, ending, runner_id="r", labels=["linux"], lease_ttl=60
    )
    assert answer == (None, None)
    assert (await kit.store.get_job(gpu.id)).status is JobStatus.QUEUED
    # a report that is not a whole job goes the long way, and still takes the next job
    running = await kit.running()
    ending = [LogLines(LINES), JobEnded(JobStatus.FAILED, FAIL, {})]
    last, following = await kit.store.report_and_acquire(
        running.id, running.lease_epoch, ending, runner_id="r", labels=["gpu"], lease_ttl=60
    )
    assert last == 3 and following is not None and following.id == gpu.id


async def test_a_refused_report_takes_no_next_job(kit: Kit) -> None:
    job = await kit.acquired()
    waiting = await kit.queued()
    ending = [JobStarted(), JobEnded(JobStatus.COMPLETED, OK, {})]
    with pytest.raises(LeaseLost):
        await kit.store.report_and_acquire(
            job.id, job.lease_epoch + 1, ending, runner_id="r", labels=[], lease_ttl=60
        )
    await kit.store.start_step(job.id, job.lease_epoch, 0, None, "Build")
    mark = len(await kit.events())
    whole = [JobStarted(), *step(0, LINES, BUILT), JobEnded(JobStatus.COMPLETED, OK, {})]
    with pytest.raises(Conflict, match="cannot start step 0"):
        await kit.store.report_and_acquire(
            job.id, job.lease_epoch, whole, runner_id="r", labels=[], lease_ttl=60
        )
    assert (await kit.store.get_job(waiting.id)).status is JobStatus.QUEUED
    assert len(await kit.events()) == mark


@pytest.mark.parametrize("whole", [True, False], ids=["whole-job", "step-by-step"])
async def test_a_report_sent_again_is_handed_the_same_next_job(kit: Kit, whole: bool) -> None:
    job = await kit.acquired()
    first, second = await kit.queued(), await kit.queued()
    ending = [
        JobStarted(),
        *(step(0, LINES, BUILT) if whole else []),
        JobEnded(JobStatus.COMPLETED, OK, {}),
    ]
    asked = {"runner_id": "runner-1", "labels": [], "lease_ttl": 60}
    last, handed = await kit.store.report_and_acquire(
        job.id, job.lease_epoch, ending, seq=1, **asked
    )
    assert handed is not None and handed.id == first.id
    replayed = last or 0  # what a report sent again answers: the job's last line so far
    # The answer was lost: the same report again is answered (not applied again) with the
    # same job, its lease counted from now, as the runner will count it; nothing else goes.
    kit.clock.advance(20)
    # Another runner's call of the same name is handed nothing of it.
    elsewhere = {**asked, "runner_id": "runner-2"}
    assert await kit.store.report_and_acquire(
        job.id, job.lease_epoch, ending, seq=1, **elsewhere
    ) == (replayed, None)
    again = await kit.store.report_and_acquire(job.id, job.lease_epoch, ending, seq=1, **asked)
    assert again[0] == replayed
    assert again[1] is not None and again[1].id == first.id
    assert again[1].lease_epoch == handed.lease_epoch
    assert again[1].lease_expires_at == kit.clock.now + 60
    # Handed again once only: a report whose answers never get through keeps no lease alive.
    once = await kit.store.report_and_acquire(job.id, job.lease_epoch, ending, seq=1, **asked)
    assert once == (replayed, None)
    assert (await kit.store.get_job(second.id)).status is JobStatus.QUEUED

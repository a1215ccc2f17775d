"""scheduler_work: which committed events leave the scheduler something to do."""

from __future__ import annotations

from conveyor.engine.records import SchedulerWork, scheduler_work

CREATED = ("run.created", "r1", {"jobs": 2, "scheduled": False})
CREATED_AND_QUEUED = ("run.created", "r1", {"jobs": 2, "scheduled": True})
QUEUED = ("job.queued", "r1", {"key": "build"})
ENDED = ("job.completed", "r1", {"key": "build", "status": "completed"})
CONCLUDED = ("run.completed", "r1", {"status": "completed", "conclusion": "success", "group": None})


def test_a_creation_leaves_the_roots_to_decide_unless_it_queued_them() -> None:
    assert scheduler_work([CREATED]) == SchedulerWork(["r1"], [])
    assert scheduler_work([CREATED_AND_QUEUED, QUEUED]) == SchedulerWork([], [])


def test_a_jobs_end_leaves_its_dependants_unless_it_concluded_the_run() -> None:
    assert scheduler_work([ENDED]) == SchedulerWork(["r1"], [])
    assert scheduler_work([ENDED, CONCLUDED]) == SchedulerWork([], [])
    requeued = ("job.requeued", "r2", {})
    assert scheduler_work([requeued, ENDED, ENDED]) == SchedulerWork(["r2", "r1"], [])


def test_an_ended_run_is_released_when_it_held_a_group_or_does_not_say() -> None:
    grouped = ("run.completed", "r1", {"status": "completed", "group": "deploy"})
    unsaid = ("run.completed", "r1", {"status": "completed"})  # written by an older server
    assert scheduler_work([grouped]) == SchedulerWork([], ["r1"])
    assert scheduler_work([unsaid]) == SchedulerWork([], ["r1"])


def test_what_happens_within_a_job_concerns_nobody() -> None:
    others = [(kind, "r1", {}) for kind in ("job.acquired", "job.started", "step.started")]
    assert scheduler_work([*others, QUEUED, ("run.started", "r1", {})]) == SchedulerWork([], [])
    assert not any(scheduler_work([]))

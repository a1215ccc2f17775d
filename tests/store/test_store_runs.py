"""Runs: creation (once per idempotency key), numbering, completion and cancellation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from conveyor.engine.records import JobInstance, NewJob, RunRecord
from conveyor.engine.states import Conclusion, JobStatus, RunStatus
from conveyor.engine.store import Store
from conveyor.errors import Conflict, ExpressionError, NotFound, StaleWorkflow

if TYPE_CHECKING:
    from tests.store.conftest import Kit


async def test_create_run_writes_the_run_its_pending_jobs_and_one_event(kit: Kit) -> None:
    jobs = [
        NewJob("build", "Build", (), ("linux", "x64"), spec={"steps": [{"run": "make"}]}),
        NewJob("test", "Test", ("build",), (), matrix={"py": ["3.11", "3.12"]}),
    ]
    run, created = await kit.store.create_run(kit.new_run(payload={"n": [1, {"a": None}]}), jobs)
    assert run.status is RunStatus.QUEUED and run.conclusion is None
    assert run.run_number == 1 and run.attempt == 1 and run.tenant_id == "default"
    assert run.payload == {"n": [1, {"a": None}]}
    assert run.created_at == kit.clock.now and run.started_at is None
    assert [(j.key, j.name, j.needs, j.labels) for j in created] == [
        ("build", "Build", (), ("linux", "x64")),
        ("test", "Test", ("build",), ()),
    ]
    assert created[0].spec == {"steps": [{"run": "make"}]} and created[0].matrix is None
    assert created[1].matrix == {"py": ["3.11", "3.12"]}
    assert all(j.status is JobStatus.PENDING and j.lease_epoch == 0 for j in created)
    assert await kit.store.list_jobs(run.id) == created
    assert await kit.store.get_run(run.id) == run
    assert await kit.kinds() == ["run.created"]


async def test_the_same_idempotency_key_returns_the_existing_run(kit: Kit) -> None:
    first, first_jobs = await kit.run("build", idempotency_key="delivery-1")
    again, again_jobs = await kit.run("build", "extra", idempotency_key="delivery-1")
    assert (again, again_jobs) == (first, first_jobs)
    assert await kit.kinds() == ["run.created"]

    await kit.store.create_tenant("acme", "Acme")
    other, _ = await kit.run("build", idempotency_key="delivery-1", tenant_id="acme")
    assert other.id != first.id and other.tenant_id == "acme"


async def test_run_numbers_count_per_workflow(kit: Kit) -> None:
    one, _ = await kit.run()
    two, _ = await kit.run()
    other, _ = await kit.run(workflow_path=".github/workflows/release.yml")
    rerun, _ = await kit.run(attempt=2, run_number=one.run_number)
    assert (one.run_number, two.run_number, other.run_number) == (1, 2, 1)
    assert (rerun.run_number, rerun.attempt) == (1, 2)


async def test_bad_creations_leave_nothing(kit: Kit) -> None:
    with pytest.raises(NotFound, match="tenant 'nobody'"):
        await kit.run(tenant_id="nobody")
    with pytest.raises(ValueError, match="duplicate job keys: a"):
        await kit.run("a", "b", "a")
    assert await kit.events() == []
    with pytest.raises(Conflict):
        await kit.store.create_tenant("default", "again")


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_run("nope"),
        lambda s: s.list_jobs("nope"),
        lambda s: s.get_job("nope"),
        lambda s: s.list_steps("nope"),
        lambda s: s.read_log("nope"),
        lambda s: s.complete_run("nope", Conclusion.SUCCESS),
        lambda s: s.cancel_run("nope"),
        lambda s: s.queue_job("nope", [JobInstance("x", None)]),
        lambda s: s.skip_job("nope", "r"),
        lambda s: s.start_job("nope", 1),
        lambda s: s.append_log("nope", 1, [(None, "x")]),
    ],
)
async def test_unknown_ids_are_not_found(store: Store, call: object) -> None:
    with pytest.raises(NotFound):
        await call(store)  # type: ignore[operator]


async def test_a_run_completes_only_when_every_job_is_terminal(kit: Kit) -> None:
    run, (build, test) = await kit.run("build", "test")
    await kit.store.skip_job(test.id, "if: false")
    before = await kit.events()
    with pytest.raises(Conflict, match="unfinished jobs"):
        await kit.store.complete_run(run.id, Conclusion.SUCCESS)
    assert await kit.events() == before
    assert (await kit.store.get_run(run.id)).status is RunStatus.QUEUED

    await kit.store.skip_job(build.id, "if: false")
    kit.clock.advance(5)
    done = await kit.store.complete_run(run.id, Conclusion.SKIPPED)
    assert (done.status, done.conclusion, done.completed_at) == (
        RunStatus.COMPLETED,
        Conclusion.SKIPPED,
        kit.clock.now,
    )
    ended = (await kit.events())[-1]
    assert ended.kind == "run.completed"
    assert ended.data == {"status": "completed", "conclusion": "skipped", "group": None}
    with pytest.raises(Conflict, match="already completed"):
        await kit.store.complete_run(run.id, Conclusion.FAILURE)
    with pytest.raises(Conflict, match="already completed"):
        await kit.store.cancel_run(run.id)


async def test_the_first_job_start_starts_the_run_once(kit: Kit) -> None:
    run, jobs = await kit.run("a", "b")
    for job in jobs:
        await kit.store.queue_job(job.id, [JobInstance(job.name, None)])
    for _ in jobs:
        acquired = await kit.store.acquire_job("r", [], 60)
        assert acquired is not None
        await kit.store.start_job(acquired.id, acquired.lease_epoch)
    assert (await kit.store.get_run(run.id)).status is RunStatus.IN_PROGRESS
    assert (await kit.kinds()).count("run.started") == 1


async def test_cancel_run_cancels_waiting_jobs_and_asks_leased_ones_to_stop(kit: Kit) -> None:
    run, (_, queued, leased) = await kit.run("pending", "queued", "leased")
    await kit.store.queue_job(queued.id, [JobInstance("Queued", None, labels=("gpu",))])
    await kit.store.queue_job(leased.id, [JobInstance("Leased", None)])
    job = await kit.store.acquire_job("runner-1", [], 60)
    assert job is not None and job.id == leased.id
    mark = len(await kit.events())

    changed = await kit.store.cancel_run(run.id)
    assert [(j.key, j.status, j.cancel_requested) for j in changed] == [
        ("pending", JobStatus.CANCELLED, False),
        ("queued", JobStatus.CANCELLED, False),
        ("leased", JobStatus.ACQUIRED, True),
    ]
    assert changed[0].conclusion is Conclusion.CANCELLED
    assert [e.kind for e in (await kit.events())[mark:]] == [
        "job.completed",
        "job.completed",
        "job.cancel_requested",
    ]
    assert await kit.store.cancel_run(run.id) == []  # nothing left to change

    renewed = await kit.store.renew_lease(job.id, job.lease_epoch, 60)
    assert renewed.cancel_requested
    ended = await kit.store.finish_job(
        job.id, job.lease_epoch, JobStatus.CANCELLED, Conclusion.CANCELLED, {}
    )
    assert ended.reason == "run cancelled"
    done = await kit.store.get_run(run.id)  # its last job's end concluded it
    assert done.status is RunStatus.COMPLETED and done.conclusion is Conclusion.CANCELLED


async def test_get_run_with_a_tenant_hides_other_tenants_runs(kit: Kit) -> None:
    await kit.store.create_tenant("acme", "Acme")
    theirs, _ = await kit.run(tenant_id="acme")
    assert (await kit.store.get_run(theirs.id, tenant_id="acme")).id == theirs.id
    assert (await kit.store.get_run(theirs.id)).id == theirs.id
    with pytest.raises(NotFound):
        await kit.store.get_run(theirs.id, tenant_id="default")
    with pytest.raises(NotFound):
        await kit.store.list_runs("default", after=theirs.id)


async def test_runs_remember_their_workflow_and_concurrency_group(kit: Kit) -> None:
    run, _ = await kit.run(workflow_id="wf-1", concurrency_group="deploy-prod", repository_id="r")
    again = await kit.store.get_run(run.id)
    assert (again.workflow_id, again.concurrency_group, again.repository_id) == (
        "wf-1",
        "deploy-prod",
        "r",
    )
    plain, _ = await kit.run()
    assert (plain.workflow_id, plain.concurrency_group) == (None, None)


async def test_runs_list_newest_first_in_cursor_pages(kit: Kit) -> None:
    made = []
    for n in range(7):
        run, _ = await kit.run()
        made.append(run)
        if n != 3:  # two runs share a creation time: the id breaks the tie
            kit.clock.advance(1)
    expected = sorted(made, key=lambda r: (r.created_at, r.id), reverse=True)
    pages, after = [], None
    while page := await kit.store.list_runs("default", after=after, limit=3):
        pages.append([r.id for r in page])
        after = page[-1].id
    assert pages == [[r.id for r in expected[n : n + 3]] for n in (0, 3, 6)]
    assert await kit.store.list_runs("default", limit=0) == []
    with pytest.raises(NotFound):
        await kit.store.list_runs("default", after="ghost")


async def test_runs_list_by_status_branch_workflow_event_and_group(kit: Kit) -> None:
    await kit.store.create_tenant("acme", "Acme")
    main, (job,) = await kit.run(workflow_id="ci", concurrency_group="g")
    kit.clock.advance(1)
    feature, _ = await kit.run(ref="refs/heads/feature/x", event="pull_request", workflow_id="ci")
    kit.clock.advance(1)
    tag, _ = await kit.run(ref="refs/tags/v1", workflow_id="release", concurrency_group="g")
    await kit.run(tenant_id="acme")
    await kit.store.queue_job(job.id, [JobInstance("Build", None)])
    acquired = await kit.store.acquire_job("r", [], 60)
    assert acquired is not None
    await kit.store.start_job(acquired.id, acquired.lease_epoch)

    async def ids(**filters: object) -> list[str]:
        return [r.id for r in await kit.store.list_runs("default", **filters)]  # type: ignore[arg-type]

    assert await ids() == [tag.id, feature.id, main.id]
    assert await ids(status=RunStatus.IN_PROGRESS) == [main.id]
    assert await ids(status=[RunStatus.QUEUED, RunStatus.IN_PROGRESS]) == [
        tag.id,
        feature.id,
        main.id,
    ]
    assert await ids(status=[]) == []
    assert await ids(branch="main") == [main.id]
    assert await ids(branch="feature/x") == [feature.id]
    assert await ids(branch="v1") == []
    assert await ids(workflow_id="ci") == [feature.id, main.id]
    assert await ids(event="pull_request") == [feature.id]
    assert await ids(concurrency_group="g", status=RunStatus.QUEUED) == [tag.id]
    assert await ids(workflow_id="ci", event="push", branch="main") == [main.id]
    assert await ids(branch="x'); DROP TABLE workflow_runs; --") == []
    assert len(await kit.store.list_runs("acme")) == 1
    assert await kit.store.list_runs("nobody") == []
    with pytest.raises(ValueError):
        await kit.store.list_runs("default", status="finished")  # type: ignore[arg-type]


async def test_group_of_names_the_group_from_the_new_run(kit: Kit) -> None:
    seen = []

    def group_of(run: RunRecord) -> str:
        seen.append(run)
        return f"deploy-{run.id}-{run.run_number}"

    first, _ = await kit.run()
    run, _ = await kit.store.create_run(
        kit.new_run(concurrency_group="ignored"), [NewJob("a", "A", (), ())], group_of=group_of
    )
    assert run.concurrency_group == f"deploy-{run.id}-2"
    assert [r.id for r in seen] == [run.id] and seen[0].run_number == 2
    assert await kit.store.get_run(run.id) == run
    none, _ = await kit.store.create_run(kit.new_run(), [], group_of=lambda r: None)
    assert none.concurrency_group is None and first.concurrency_group is None


async def test_a_failing_group_of_creates_nothing(kit: Kit) -> None:
    def group_of(run: RunRecord) -> str:
        raise ExpressionError("bad group")

    with pytest.raises(ExpressionError, match="bad group"):
        await kit.store.create_run(kit.new_run(), [NewJob("a", "A", (), ())], group_of=group_of)
    assert await kit.events() == []
    assert await kit.store.list_runs("default") == []


async def test_cancel_run_keeps_the_reason_given(kit: Kit) -> None:
    run, (waiting, leased) = await kit.run("waiting", "leased")
    await kit.store.queue_job(leased.id, [JobInstance("Leased", None)])
    job = await kit.store.acquire_job("runner-1", [], 60)
    assert job is not None
    reason = "superseded by a newer run in concurrency group 'deploy'"
    changed = await kit.store.cancel_run(run.id, reason=reason)
    assert [(j.id, j.reason) for j in changed] == [(waiting.id, reason), (leased.id, reason)]


async def test_a_run_with_more_jobs_than_one_insert_takes_keeps_their_order(kit: Kit) -> None:
    jobs = [NewJob(f"job-{n:04d}", f"Job {n}", (), ()) for n in range(1200)]
    run, created = await kit.store.create_run(kit.new_run(), jobs)
    assert [job.key for job in created] == [job.key for job in jobs]
    assert await kit.store.list_jobs(run.id) == created


async def test_queue_now_creates_the_jobs_it_names_queued_a_row_per_instance(kit: Kit) -> None:
    seen = []

    def queue_now(run: RunRecord) -> dict[str, list[JobInstance]]:
        seen.append(run)
        return {
            "build": [
                JobInstance(f"build {os} #{run.run_number}", {"os": os}, {"n": i}, (os,))
                for i, os in enumerate(("linux", "mac"))
            ],
            "lint": [JobInstance("Lint", None)],
        }

    jobs = [
        NewJob("build", "build", (), ("any",)),
        NewJob("lint", "lint", (), ("linux", "x64")),
        NewJob("test", "test", ("build",), ()),
    ]
    run, created = await kit.store.create_run(
        kit.new_run(), jobs, group_of=lambda r: f"g-{r.run_number}", queue_now=queue_now
    )
    assert [r.id for r in seen] == [run.id] and seen[0].concurrency_group == "g-1"
    assert [(j.key, j.name, j.status, j.labels, j.matrix, j.spec) for j in created] == [
        ("build", "build linux #1", JobStatus.QUEUED, ("linux",), {"os": "linux"}, {"n": 0}),
        ("build", "build mac #1", JobStatus.QUEUED, ("mac",), {"os": "mac"}, {"n": 1}),
        ("lint", "Lint", JobStatus.QUEUED, ("linux", "x64"), None, {}),
        ("test", "test", JobStatus.PENDING, (), None, {}),
    ]
    assert [j.queued_at for j in created] == [kit.clock.now] * 3 + [None]
    assert await kit.store.list_jobs(run.id) == created
    events = await kit.events()
    assert [(e.kind, e.job_id) for e in events] == [
        ("run.created", None),
        *[("job.queued", job.id) for job in created[:3]],
    ]
    assert events[0].data == {"jobs": 3, "scheduled": True}
    # A runner can take them at once, each with its own labels.
    taken = await kit.store.acquire_job("runner-1", ["mac"], 60)
    assert taken is not None and taken.id == created[1].id


async def test_queue_now_answering_none_leaves_every_job_pending(kit: Kit) -> None:
    _, created = await kit.store.create_run(
        kit.new_run(), [NewJob("a", "A", (), ())], queue_now=lambda run: None
    )
    assert [j.status for j in created] == [JobStatus.PENDING]
    events = await kit.events()
    assert [e.kind for e in events] == ["run.created"]
    assert events[0].data == {"jobs": 1, "scheduled": False}


async def test_a_failing_queue_now_creates_nothing(kit: Kit) -> None:
    def queue_now(run: RunRecord) -> dict[str, list[JobInstance]]:
        raise ExpressionError("bad matrix")

    with pytest.raises(ExpressionError, match="bad matrix"):
        await kit.store.create_run(kit.new_run(), [NewJob("a", "A", (), ())], queue_now=queue_now)
    with pytest.raises(ValueError, match="without an instance"):
        await kit.store.create_run(
            kit.new_run(), [NewJob("a", "A", (), ())], queue_now=lambda run: {"a": []}
        )
    assert await kit.events() == []
    assert await kit.store.list_runs("default") == []


async def test_run_completed_names_the_group_the_run_held(kit: Kit) -> None:
    run, _ = await kit.store.create_run(kit.new_run(), [], group_of=lambda r: "deploy")
    await kit.store.complete_run(run.id, Conclusion.SUCCESS)
    assert (await kit.events())[-1].data["group"] == "deploy"


async def test_a_run_is_created_only_from_the_workflow_as_it_was_read(kit: Kit) -> None:
    store = kit.store
    read = await store.register_workflow("default", "ci.yml", "on: push", "CI")
    as_read = kit.new_run(workflow_id=read.id, workflow_version=read.updated_at)
    created, _ = await store.create_run(as_read, [])
    assert created.workflow_id == read.id
    mark = len(await kit.events())

    kit.clock.advance(1)
    changed = await store.register_workflow("default", "ci.yml", "on: [push]", "CI")
    with pytest.raises(StaleWorkflow):
        await store.create_run(as_read, [])
    await store.create_run(
        kit.new_run(workflow_id=read.id, workflow_version=changed.updated_at), []
    )

    disabled = await store.set_workflow_enabled("default", read.id, False)
    later = kit.new_run(workflow_id=read.id, workflow_version=disabled.updated_at)
    with pytest.raises(StaleWorkflow):  # disabled, even at the version just read
        await store.create_run(later, [])
    await store.delete_workflow("default", read.id)
    with pytest.raises(StaleWorkflow):
        await store.create_run(as_read, [])
    assert [e.kind for e in (await kit.events())[mark:]] == ["run.created"]
    assert len(await store.list_runs("default")) == 2

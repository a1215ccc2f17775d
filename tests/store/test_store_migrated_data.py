"""Migrations keep the rows of every earlier version, and the store carries on with them.

A database is built at an earlier version with the rows a server of that
version would have left (written with plain SQL, in that version's columns
only), then opened by the store, which migrates it to the latest version.
`ROWS` says which version created each table and added each column, so a
new migration needs a line here only when it adds a column or a table.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import pytest
from tests.store.conftest import POSTGRES_URL, Clock, Place, new_run

from conveyor.engine.reports import JobEnded, LogLines, StepEnded, StepFinish
from conveyor.engine.states import Conclusion, JobStatus, RunStatus, StepStatus
from conveyor.engine.store import Store
from conveyor.store.postgres_base import connect
from conveyor.store.postgres_schema import migrate_postgres
from conveyor.store.schema import LATEST, migrate_sqlite

T = 1_700_000_000.0
PATH = ".github/workflows/ci.yml"
SOURCE = "on: push\njobs:\n  build:\n    runs-on: linux\n    steps:\n      - run: make\n"
ADMIN = hashlib.sha256(b"admin-token").hexdigest()
RUNNER = hashlib.sha256(b"runner-token").hexdigest()
FINGERPRINT = "f" * 64


@dataclass(frozen=True)
class Row:
    """One row of `table`, which version `since` created (and `until`, if given, dropped)."""

    table: str
    since: int
    values: dict[str, Any]
    """Its columns as version `since` had them."""
    added: dict[int, dict[str, Any]] = field(default_factory=dict)
    """The columns later versions added, by version."""
    until: int | None = None

    def at(self, version: int) -> dict[str, Any] | None:
        """The row as a database at `version` holds it, or None when it has no such table."""
        if version < self.since or (self.until is not None and version >= self.until):
            return None
        values = dict(self.values)
        for added_in, columns in self.added.items():
            if added_in <= version:
                values.update(columns)
        return values


ROWS = (
    Row(
        "runners",
        1,
        {
            "id": "runner-1",
            "tenant_id": "default",
            "name": "box-1",
            "labels": '["self-hosted", "linux"]',
            "created_at": T,
            "last_seen_at": T + 5,
        },
    ),
    Row(
        "tokens",
        2,
        {
            "hash": ADMIN,
            "tenant_id": "default",
            "kind": "admin",
            "runner_id": None,
            "created_at": T,
        },
    ),
    Row(
        "tokens",
        2,
        {
            "hash": RUNNER,
            "tenant_id": "default",
            "kind": "runner",
            "runner_id": "runner-1",
            "created_at": T,
        },
    ),
    Row(
        "repositories",
        2,
        {
            "id": "repo-1",
            "tenant_id": "default",
            "name": "acme/app",
            "url": "/srv/app",
            "created_at": T,
        },
    ),
    Row(
        "workflows",
        2,
        {
            "id": "wf-1",
            "tenant_id": "default",
            "repository_id": "repo-1",
            "path": PATH,
            "name": "CI",
            "source": SOURCE,
            "enabled": True,
            "created_at": T,
            "updated_at": T,
        },
    ),
    Row(
        "workflow_runs",
        1,
        {
            "id": "run-1",
            "tenant_id": "default",
            "repository_id": "repo-1",
            "workflow_path": PATH,
            "workflow_name": "CI",
            "event": "push",
            "payload": '{"ref": "refs/heads/main"}',
            "ref": "refs/heads/main",
            "sha": "0123456789abcdef0123456789abcdef01234567",
            "inputs": "{}",
            "status": "in_progress",
            "conclusion": None,
            "attempt": 1,
            "run_number": 1,
            "idempotency_key": "delivery-1",
            "created_at": T,
            "started_at": T + 1,
            "completed_at": None,
        },
        {2: {"workflow_id": "wf-1", "concurrency_group": "ci-main"}},
    ),
    Row(
        "jobs",
        1,
        {
            "id": "job-build",
            "run_id": "run-1",
            "tenant_id": "default",
            "key": "build",
            "name": "build",
            "needs": "[]",
            "labels": '["linux"]',
            "matrix": None,
            "spec": "{}",
            "status": "completed",
            "conclusion": "success",
            "outputs": '{"version": "7"}',
            "lease_owner": "runner-1",
            "lease_epoch": 1,
            "lease_expires_at": None,
            "retry_count": 0,
            "cancel_requested": False,
            "reason": None,
            "log_seq": 2,
            "created_at": T,
            "queued_at": T,
            "started_at": T + 1,
            "completed_at": T + 2,
        },
        {3: {"report_seq": 2}, 6: {"handed_with": "poll-1"}},
    ),
    Row(
        "jobs",
        1,
        {
            "id": "job-test",
            "run_id": "run-1",
            "tenant_id": "default",
            "key": "test",
            "name": "test",
            "needs": '["build"]',
            "labels": '["linux"]',
            "matrix": '{"py": "3.12"}',
            "spec": "{}",
            "status": "running",
            "conclusion": None,
            "outputs": "{}",
            "lease_owner": "runner-1",
            "lease_epoch": 1,
            "lease_expires_at": T + 600,
            "retry_count": 0,
            "cancel_requested": False,
            "reason": None,
            "log_seq": 1,
            "created_at": T,
            "queued_at": T + 2,
            "started_at": T + 3,
            "completed_at": None,
        },
        {3: {"report_seq": 2}, 6: {"handed_with": "poll-2"}},
    ),
    Row(
        "steps",
        1,
        {
            "job_id": "job-build",
            "step_index": 0,
            "epoch": 1,
            "step_id": "v",
            "name": "Run make",
            "status": "completed",
            "outcome": "success",
            "conclusion": "success",
            "outputs": '{"version": "7"}',
            "started_at": T + 1,
            "completed_at": T + 2,
        },
    ),
    Row(
        "steps",
        1,
        {
            "job_id": "job-test",
            "step_index": 0,
            "epoch": 1,
            "step_id": None,
            "name": "Run tests",
            "status": "running",
            "outcome": None,
            "conclusion": None,
            "outputs": "{}",
            "started_at": T + 3,
            "completed_at": None,
        },
    ),
    Row("log_lines", 1, {"job_id": "job-build", "seq": 1, "step_index": 0, "text": "hello"}),
    Row("log_lines", 1, {"job_id": "job-build", "seq": 2, "step_index": 0, "text": "world"}),
    Row("log_lines", 1, {"job_id": "job-test", "seq": 1, "step_index": 0, "text": "testing"}),
    Row(
        "outbox",
        1,
        {
            "kind": "run.created",
            "run_id": "run-1",
            "job_id": None,
            "data": '{"jobs": 2, "scheduled": false}',
            "created_at": T,
        },
    ),
    Row(
        "outbox",
        1,
        {
            "kind": "job.completed",
            "run_id": "run-1",
            "job_id": "job-build",
            "data": '{"key": "build", "status": "completed", "conclusion": "success"}',
            "created_at": T + 2,
        },
    ),
    Row("consumer_cursors", 1, {"consumer": "scheduler", "position": 1, "updated_at": T}),
    Row(
        "artifacts",
        1,
        {
            "id": "artifact-1",
            "run_id": "run-1",
            "name": "bundle",
            "path": "/data/artifacts/run-1/bundle",
            "size": 42,
            "created_at": T + 2,
        },
        {4: {"job_key": "build"}, 8: {"job_id": "job-build", "epoch": 1}},
    ),
    Row(
        "cron_ticks",
        2,
        {"workflow_id": "wf-1", "cron": "0 * * * *", "tick": T, "claimed_at": T},
        until=9,
    ),
    # Answers stored before version 7 were bound to no request body: that version drops them.
    Row(
        "idempotent_responses",
        2,
        {
            "tenant_id": "default",
            "key": "old-key",
            "method": "POST",
            "path": "/api/v1/workflows/wf-1/dispatch",
            "status": 202,
            "body": '{"run_id": "run-1"}',
            "created_at": T,
        },
        until=7,
    ),
    Row(
        "idempotent_responses",
        7,
        {
            "tenant_id": "default",
            "key": "new-key",
            "fingerprint": FINGERPRINT,
            "reservation": "reservation-1",
            "reserved_at": T,
            "status": 202,
            "body": '{"run_id": "run-1"}',
        },
    ),
)


def _insert(table: str, values: dict[str, Any], placeholder: str) -> str:
    marks = ", ".join([placeholder] * len(values))
    return f"INSERT INTO {table} ({', '.join(values)}) VALUES ({marks})"


async def build(place: Place, version: int, clock: Clock) -> None:
    """A database at `version` holding `ROWS` as that version's columns can."""
    rows = [(row.table, values) for row in ROWS if (values := row.at(version)) is not None]
    if place.schema is None:
        db = sqlite3.connect(place.path, isolation_level=None)
        try:
            migrate_sqlite(db, clock, target=version)
            db.execute("BEGIN")
            for table, values in rows:
                db.execute(_insert(table, values, "?"), list(values.values()))
            db.execute("COMMIT")
        finally:
            db.close()
        return
    conn = await connect(POSTGRES_URL, place.schema)
    try:
        await migrate_postgres(conn, clock, place.schema, target=version)
        async with conn.transaction():
            for table, values in rows:
                await conn.execute(_insert(table, values, "%s"), list(values.values()))
    finally:
        await conn.close()


@pytest.mark.parametrize("backend", ["sqlite-file", "postgres"])
@pytest.mark.parametrize("start", range(1, LATEST + 1))
async def test_rows_of_every_earlier_version_survive_the_migrations(
    place_of: Any, clock: Clock, backend: str, start: int
) -> None:
    """From `start` to the latest version (at the latest: the rows are as the store writes them)."""
    place: Place = place_of(backend)
    await build(place, start, clock)
    store = await place.open(clock)
    try:
        await _the_rows_are_there(store, start)
        await _the_store_carries_on_with_them(store, start)
    finally:
        await store.close()


async def _the_rows_are_there(store: Store, start: int) -> None:
    service = start >= 2  # version 2 added tokens, repositories and workflows
    run = await store.get_run("run-1")
    assert (run.status, run.run_number, run.idempotency_key) == (
        RunStatus.IN_PROGRESS,
        1,
        "delivery-1",
    )
    assert (run.payload, run.repository_id) == ({"ref": "refs/heads/main"}, "repo-1")
    assert (run.workflow_id, run.concurrency_group) == (
        ("wf-1", "ci-main") if service else (None, None)
    )
    jobs = await store.list_jobs("run-1")
    assert [(j.key, j.status, j.needs, j.outputs) for j in jobs] == [
        ("build", JobStatus.COMPLETED, (), {"version": "7"}),
        ("test", JobStatus.RUNNING, ("build",), {}),
    ]
    assert (jobs[1].matrix, jobs[1].lease_owner, jobs[1].lease_epoch) == (
        {"py": "3.12"},
        "runner-1",
        1,
    )
    (step,) = await store.list_steps("job-build")
    assert (step.step_id, step.conclusion, step.outputs) == (
        "v",
        Conclusion.SUCCESS,
        {"version": "7"},
    )
    assert [line.text for line in await store.read_log("job-build")] == ["hello", "world"]
    assert [e.kind for e in await store.events_after(0)] == ["run.created", "job.completed"]
    assert await store.get_cursor("scheduler") == 1
    assert (await store.get_runner("runner-1")).labels == ("self-hosted", "linux")
    (artifact,) = await store.list_artifacts("run-1")
    assert (artifact.name, artifact.size) == ("bundle", 42)
    assert artifact.job_key == ("build" if start >= 4 else None)
    assert (artifact.job_id, artifact.epoch) == (("job-build", 1) if start >= 8 else (None, None))
    if service:
        admin, runner = await store.find_token(ADMIN), await store.find_token(RUNNER)
        assert admin is not None and admin.kind == "admin"
        assert runner is not None and runner.runner_id == "runner-1"
        assert (await store.get_repository("default", "repo-1")).name == "acme/app"
        workflow = await store.get_workflow("default", "wf-1")
        assert (workflow.path, workflow.source, workflow.enabled) == (PATH, SOURCE, True)
    if start >= 7:  # a stored answer is still given for its key
        kept = await store.reserve_response("default", "new-key", FINGERPRINT, 60.0)
        assert (kept.reservation, kept.status, kept.body) == (None, 202, '{"run_id": "run-1"}')
    else:  # the answers stored before version 7 are gone: the key is free again
        dropped = await store.reserve_response("default", "old-key", FINGERPRINT, 60.0)
        assert dropped.reservation is not None


async def _the_store_carries_on_with_them(store: Store, start: int) -> None:
    old_events = await store.events_after(0)
    # The old delivery's key still finds its run; numbering goes on after it.
    again, _ = await store.create_run(
        new_run(idempotency_key="delivery-1", workflow_path=PATH, repository_id="repo-1"), []
    )
    assert again.id == "run-1"
    later, _ = await store.create_run(new_run(workflow_path=PATH, repository_id="repo-1"), [])
    assert later.run_number == 2
    # The runner's lease still holds: its report ends the job, and with it the run.
    if start >= 3:  # the number of its last report was kept: sent again, it changes nothing
        assert await store.apply_report("job-test", 1, [LogLines([(0, "again")])], seq=2) == 1
    done = StepFinish(StepStatus.COMPLETED, Conclusion.SUCCESS, Conclusion.SUCCESS, {})
    report = [
        LogLines([(0, "passed")]),
        StepEnded(0, done),
        JobEnded(JobStatus.COMPLETED, Conclusion.SUCCESS, {}),
    ]
    assert await store.apply_report("job-test", 1, report, seq=3) == 2
    assert [line.text for line in await store.read_log("job-test")] == ["testing", "passed"]
    assert [s.status for s in await store.list_steps("job-test")] == [StepStatus.COMPLETED]
    ended = await store.get_run("run-1")
    assert (ended.status, ended.conclusion) == (RunStatus.COMPLETED, Conclusion.SUCCESS)
    # New events are numbered after the old ones, which stay first.
    new_events = await store.events_after(old_events[-1].id)
    assert [e.kind for e in new_events][-2:] == ["job.completed", "run.completed"]
    assert await store.events_after(0, limit=1000) == old_events + new_events

"""The Store on SQLite (stdlib sqlite3): opening a database, tenants, runs and the outbox.

The scheduler's job operations live in `sqlite_jobs`, the lease-fenced
runner operations in `sqlite_runner`, tokens, runners, repositories,
workflows, artifacts and remembered responses in `sqlite_service`, the
transaction plumbing in `sqlite_base`. Statements are constant strings (sqlite3 keeps them
prepared). Calls are synchronous inside the async methods: SQLite is local
and a transition takes well under a millisecond; only a writer in another
process holding the lock (up to the busy timeout) would stall the loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence

from conveyor.engine.records import (
    EventKind,
    JobInstance,
    JobRecord,
    NewJob,
    NewRun,
    OutboxEvent,
    RunRecord,
)
from conveyor.engine.states import (
    Conclusion,
    JobStatus,
    RunStatus,
    allowed_from,
    is_terminal,
)
from conveyor.engine.store import Store
from conveyor.errors import Conflict, NotFound, StaleWorkflow, StoreError
from conveyor.store import rows
from conveyor.store.schema import migrate_sqlite
from conveyor.store.sqlite_base import LEASED_IN
from conveyor.store.sqlite_jobs import UNLEASED_CANCELLABLE, SqliteJobSide
from conveyor.store.sqlite_runner import SqliteRunnerSide
from conveyor.store.sqlite_service import SqliteServiceSide

_BUSY_TIMEOUT_MS = 10_000

_INSERT_RUN = """
    INSERT INTO workflow_runs (id, tenant_id, repository_id, workflow_path, workflow_name,
        event, payload, ref, sha, inputs, status, attempt, run_number, idempotency_key,
        created_at, workflow_id, concurrency_group)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)
"""
# The artifacts that carried-over jobs uploaded in the attempt a re-run continues.
_CARRY_ARTIFACTS = """
    INSERT INTO artifacts (id, run_id, name, path, size, created_at, job_key)
    SELECT lower(hex(randomblob(16))), ?1, name, path, size, created_at, job_key
    FROM artifacts WHERE run_id = ?2 AND job_key IN (SELECT value FROM json_each(?3))
"""
_INSERT_JOB = """
    INSERT INTO jobs (id, run_id, tenant_id, key, name, needs, labels, matrix, spec, status,
        created_at, queued_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_WORKFLOW_AS_READ = (
    "SELECT 1 FROM workflows WHERE id = ? AND tenant_id = ? AND enabled AND updated_at = ?"
)
_SET_GROUP = f"""
    UPDATE workflow_runs SET concurrency_group = ? WHERE id = ? RETURNING {rows.RUN_COLUMNS}
"""
_CANCEL_RUN_JOBS = f"""
    UPDATE jobs SET status = 'cancelled', conclusion = 'cancelled', reason = ?, completed_at = ?
    WHERE run_id = ? AND status IN {UNLEASED_CANCELLABLE}
    RETURNING id
"""
_ASK_RUN_JOBS_TO_STOP = f"""
    UPDATE jobs SET cancel_requested = 1, reason = ?
    WHERE run_id = ? AND status IN {LEASED_IN} AND cancel_requested = 0
    RETURNING id
"""
_COMPLETE_RUN = f"""
    UPDATE workflow_runs SET status = 'completed', conclusion = ?, completed_at = ?
    WHERE id = ? AND status IN {rows.in_list(allowed_from(RunStatus.COMPLETED))}
      AND NOT EXISTS (
          SELECT 1 FROM jobs WHERE jobs.run_id = workflow_runs.id
            AND jobs.status NOT IN {rows.in_list(s for s in JobStatus if is_terminal(s))}
      )
    RETURNING {rows.RUN_COLUMNS}
"""


async def _use_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL; while another process switches the same new file, try again."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:  # the switch does not wait for the busy timeout
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


class SqliteStore(SqliteJobSide, SqliteRunnerSide, SqliteServiceSide, Store):
    """A `Store` on one SQLite connection; safe to share between threads."""

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = rows.new_id,
        durable: bool = True,
    ) -> SqliteStore:
        """Open (creating and migrating as needed) the database at `path` or ':memory:'.

        `durable=False` skips fsync: for throwaway stores such as `conveyor run`'s.
        A durable store runs WAL with `synchronous = NORMAL`: a commit survives a
        crash of any process (the server's own `kill -9` included); only a power
        loss or an OS crash may roll back the last commits, never corrupt the
        file. An fsync per commit (FULL) cost 5-10 ms a transition on this
        class of machine and capped the server at ~25 jobs/s; PostgreSQL is the
        choice where every commit must survive the host.
        """
        try:
            db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, cached_statements=256
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {path!r}: {exc}") from exc
        try:
            try:
                db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                db.execute("PRAGMA foreign_keys = ON")
                await _use_wal(db)
                db.execute(f"PRAGMA synchronous = {'NORMAL' if durable else 'OFF'}")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open SQLite database {path!r}: {exc}") from exc
            migrate_sqlite(db, clock)
        except BaseException:
            db.close()
            raise
        return cls(db, clock, new_id)

    # -- tenants and runs ---------------------------------------------------------------

    async def create_tenant(self, tenant_id: str, name: str) -> None:
        with self._write() as db:
            inserted = db.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (tenant_id, rows.text(name), self._clock()),
            ).rowcount
            if not inserted:
                raise Conflict(f"tenant {tenant_id!r} already exists")

    async def create_run(
        self,
        run: NewRun,
        jobs: Sequence[NewJob],
        *,
        group_of: Callable[[RunRecord], str | None] | None = None,
        queue_now: Callable[[RunRecord], Mapping[str, Sequence[JobInstance]] | None] | None = None,
        queue_now_reads_number: bool = True,
    ) -> tuple[RunRecord, list[JobRecord]]:
        keys = [job.key for job in jobs]
        if len(set(keys)) != len(keys):
            duplicates = sorted({key for key in keys if keys.count(key) > 1})
            raise ValueError(f"duplicate job keys: {', '.join(duplicates)}")
        payload, inputs = rows.dump(run.payload), rows.dump(run.inputs)
        now = self._clock()
        with self._write() as db:
            if run.idempotency_key is not None:
                row = db.execute(
                    f"SELECT {rows.RUN_COLUMNS} FROM workflow_runs "
                    "WHERE tenant_id = ? AND idempotency_key = ?",
                    (run.tenant_id, run.idempotency_key),
                ).fetchone()
                if row is not None:
                    return rows.run(row), self._jobs_of(db, row[0])
            if (
                db.execute("SELECT 1 FROM tenants WHERE id = ?", (run.tenant_id,)).fetchone()
                is None
            ):
                raise NotFound(f"tenant {run.tenant_id!r} not found")
            if (
                run.workflow_version is not None
                and not db.execute(
                    _WORKFLOW_AS_READ, (run.workflow_id, run.tenant_id, run.workflow_version)
                ).fetchone()
            ):
                raise StaleWorkflow(f"workflow {run.workflow_id!r} changed since it was read")
            number = run.run_number
            if number is None:
                (number,) = db.execute(
                    "SELECT COALESCE(MAX(run_number), 0) + 1 FROM workflow_runs "
                    "WHERE tenant_id = ? AND repository_id IS ? AND workflow_path = ?",
                    (run.tenant_id, run.repository_id, run.workflow_path),
                ).fetchone()
            run_id = self._new_id()
            db.execute(
                _INSERT_RUN,
                (
                    run_id,
                    run.tenant_id,
                    run.repository_id,
                    rows.text(run.workflow_path),
                    rows.text(run.workflow_name),
                    rows.text(run.event),
                    payload,
                    run.ref,
                    run.sha,
                    inputs,
                    run.attempt,
                    number,
                    run.idempotency_key,
                    now,
                    run.workflow_id,
                    run.concurrency_group,
                ),
            )
            row = db.execute(
                f"SELECT {rows.RUN_COLUMNS} FROM workflow_runs WHERE id = ?", (run_id,)
            ).fetchone()
            if group_of is not None:
                row = db.execute(_SET_GROUP, (group_of(rows.run(row)), run_id)).fetchone()
            record = rows.run(row)
            queued = None if queue_now is None else queue_now(record)
            db.executemany(
                _INSERT_JOB,
                [
                    (self._new_id(), run_id, run.tenant_id, *values)
                    for values in rows.new_job_rows(jobs, queued, now)
                ],
            )
            if run.carried_from is not None and run.carried_jobs:
                carried = rows.dump_labels(run.carried_jobs)
                db.execute(_CARRY_ARTIFACTS, (run_id, run.carried_from, carried))
            self._emit(db, EventKind.RUN_CREATED, run_id, None, rows.run_created(jobs, queued), now)
            created = self._jobs_of(db, run_id)
            for job in created:
                if job.status == JobStatus.QUEUED:
                    self._emit(db, EventKind.JOB_QUEUED, run_id, job.id, rows.job_event(job), now)
            return record, created

    async def get_run(self, run_id: str, *, tenant_id: str | None = None) -> RunRecord:
        with self._read() as db:
            row = db.execute(
                f"SELECT {rows.RUN_COLUMNS} FROM workflow_runs WHERE id = ?", (run_id,)
            ).fetchone()
        if row is None or tenant_id not in (None, row[1]):
            raise NotFound(f"run {run_id!r} not found")
        return rows.run(row)

    async def list_runs(
        self,
        tenant_id: str,
        *,
        status: RunStatus | Collection[RunStatus] | None = None,
        branch: str | None = None,
        workflow_id: str | None = None,
        event: str | None = None,
        concurrency_group: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        sql, params = rows.run_listing(
            "?",
            tenant_id,
            status=status,
            branch=branch,
            workflow_id=workflow_id,
            event=event,
            concurrency_group=concurrency_group,
            after=after,
            limit=limit,
        )
        with self._read() as db:
            if (
                after is not None
                and not db.execute(
                    "SELECT 1 FROM workflow_runs WHERE id = ? AND tenant_id = ?", (after, tenant_id)
                ).fetchone()
            ):
                raise NotFound(f"run {after!r} not found")
            return [rows.run(row) for row in db.execute(sql, params)]

    async def complete_run(self, run_id: str, conclusion: Conclusion) -> RunRecord:
        now = self._clock()
        with self._write() as db:
            row = db.execute(_COMPLETE_RUN, (conclusion.value, now, run_id)).fetchone()
            if row is None:
                found = db.execute(
                    "SELECT status FROM workflow_runs WHERE id = ?", (run_id,)
                ).fetchone()
                if found is None:
                    raise NotFound(f"run {run_id!r} not found")
                if found[0] == RunStatus.COMPLETED:
                    raise Conflict(f"run {run_id!r} is already completed")
                raise Conflict(f"run {run_id!r} still has unfinished jobs")
            record = rows.run(row)
            data = rows.run_completed(record.status, conclusion, record.concurrency_group)
            self._emit(db, EventKind.RUN_COMPLETED, run_id, None, data, now)
            return record

    async def cancel_run(self, run_id: str, *, reason: str = "run cancelled") -> list[JobRecord]:
        now = self._clock()
        reason = rows.text(reason)
        with self._write() as db:
            found = db.execute(
                "SELECT status FROM workflow_runs WHERE id = ?", (run_id,)
            ).fetchone()
            if found is None:
                raise NotFound(f"run {run_id!r} not found")
            if found[0] == RunStatus.COMPLETED:
                raise Conflict(f"run {run_id!r} is already completed")
            cancelled = {row[0] for row in db.execute(_CANCEL_RUN_JOBS, (reason, now, run_id))}
            asked = {row[0] for row in db.execute(_ASK_RUN_JOBS_TO_STOP, (reason, run_id))}
            changed = [job for job in self._jobs_of(db, run_id) if job.id in cancelled | asked]
            for job in changed:
                kind = (
                    EventKind.JOB_COMPLETED
                    if job.id in cancelled
                    else EventKind.JOB_CANCEL_REQUESTED
                )
                self._emit(db, kind, run_id, job.id, rows.job_event(job), now)
            return changed

    # -- outbox -------------------------------------------------------------------------------

    async def events_after(self, cursor: int, limit: int = 100) -> list[OutboxEvent]:
        self._signals.outbox.looked()
        with self._read() as db:
            found = db.execute(
                f"SELECT {rows.EVENT_COLUMNS} FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (cursor, max(limit, 0)),
            ).fetchall()
        return [rows.event(row) for row in found]

    async def get_cursor(self, consumer: str) -> int:
        with self._read() as db:
            row = db.execute(
                "SELECT position FROM consumer_cursors WHERE consumer = ?", (consumer,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    async def advance_cursor(self, consumer: str, expected: int, new: int) -> bool:
        now = self._clock()
        with self._write() as db:
            if expected == 0:  # a cursor that was never stored is at 0
                changed = db.execute(
                    "INSERT INTO consumer_cursors (consumer, position, updated_at) "
                    "VALUES (?, ?, ?) ON CONFLICT (consumer) DO UPDATE "
                    "SET position = excluded.position, updated_at = excluded.updated_at "
                    "WHERE consumer_cursors.position = 0",
                    (consumer, new, now),
                ).rowcount
            else:
                changed = db.execute(
                    "UPDATE consumer_cursors SET position = ?, updated_at = ? "
                    "WHERE consumer = ? AND position = ?",
                    (new, now, consumer, expected),
                ).rowcount
            return changed == 1

    async def wait_for_event(self, timeout: float) -> None:
        await self._signals.outbox.wait(timeout)

    async def wait_for_queued(self, timeout: float) -> None:
        await self._signals.queue.wait(timeout)

    def cancels_looked(self) -> None:
        self._signals.cancels.looked()

    async def wait_for_cancel(self, timeout: float) -> None:
        await self._signals.cancels.wait(timeout)

    async def close(self) -> None:
        with self._lock:
            self._db.close()

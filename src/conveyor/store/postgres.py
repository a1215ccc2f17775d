"""The Store on PostgreSQL (psycopg 3, async): opening a database, tenants, runs and the outbox.

The same protocol and semantics as `SqliteStore`, for any number of servers
sharing one database. The scheduler's job operations live in
`postgres_jobs`, the lease-fenced runner operations in `postgres_runner`,
service objects in `postgres_service`, connections, transactions and the
commit-ordered outbox in `postgres_base`. For `wait_for_event` a store
LISTENs on `conveyor_outbox` through one extra connection, from `open` on
(and again from the next wait after that connection fails).

A store belongs to the event loop it was opened on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace

import psycopg

from conveyor.engine.records import (
    EventKind,
    JobInstance,
    JobRecord,
    NewJob,
    NewRun,
    OutboxEvent,
    RunRecord,
)
from conveyor.engine.states import Conclusion, JobStatus, RunStatus, allowed_from, is_terminal
from conveyor.engine.store import Store
from conveyor.errors import Conflict, NotFound, StaleWorkflow, StoreError
from conveyor.store import rows
from conveyor.store.postgres_base import (
    CHANNEL,
    LEASED_IN,
    Connection,
    Pool,
    Tx,
    translated,
)
from conveyor.store.postgres_creation import (
    CREATE_NUMBERED_RUN,
    CREATE_RUN,
    NEXT_RUN_NUMBER,
    creation_rows,
    new_run_row,
)
from conveyor.store.postgres_jobs import UNLEASED_CANCELLABLE, PostgresJobSide
from conveyor.store.postgres_runner import PostgresRunnerSide
from conveyor.store.postgres_schema import migrate_postgres
from conveyor.store.postgres_service import PostgresServiceSide
from conveyor.store.signal import Signals

_RUN = f"""
    SELECT {rows.RUN_COLUMNS} FROM workflow_runs
    WHERE id = %(id)s AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s::text)
"""
_CANCEL_RUN_JOBS = f"""
    UPDATE jobs SET status = 'cancelled', conclusion = 'cancelled', reason = %s,
        completed_at = %s
    WHERE run_id = %s AND status IN {UNLEASED_CANCELLABLE}
    RETURNING id
"""
_ASK_RUN_JOBS_TO_STOP = f"""
    UPDATE jobs SET cancel_requested = TRUE, reason = %s
    WHERE run_id = %s AND status IN {LEASED_IN} AND NOT cancel_requested
    RETURNING id
"""
_COMPLETE_RUN = f"""
    UPDATE workflow_runs SET status = 'completed', conclusion = %s, completed_at = %s
    WHERE id = %s AND status IN {rows.in_list(allowed_from(RunStatus.COMPLETED))}
      AND NOT EXISTS (
          SELECT 1 FROM jobs WHERE jobs.run_id = workflow_runs.id
            AND jobs.status NOT IN {rows.in_list(s for s in JobStatus if is_terminal(s))}
      )
    RETURNING {rows.RUN_COLUMNS}
"""
_POOL_SIZE = 4
"""Connections per server. A server's statements are short, and PostgreSQL gains
nothing from more of them at once than it has cores: with 8, they queued for the
outbox turn inside it instead: PostgreSQL's CPU per job fell by 0.1 to 0.3 ms with 4,
the jobs/s rose 2 to 4 % (bench/compare.py, two runs of 5 pairs; 3 connections
measured about the same, 2 gave fewer jobs/s)."""


async def _listening_connection(pool: Pool) -> Connection:
    """A new connection that LISTENs on the outbox channel."""
    conn = await pool.connect()
    try:
        await conn.execute(f"LISTEN {CHANNEL}")
    except BaseException:
        await conn.close()
        raise
    return conn


class PostgresStore(PostgresJobSide, PostgresRunnerSide, PostgresServiceSide, Store):
    """A `Store` on a PostgreSQL database (optionally in one schema of it)."""

    def __init__(
        self,
        pool: Pool,
        clock: Callable[[], float],
        new_id: Callable[[], str],
        schema: str | None,
    ) -> None:
        super().__init__(pool, clock, new_id, schema)
        self._listening: Connection | None = None
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        schema: str | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = rows.new_id,
        pool_size: int = _POOL_SIZE,
    ) -> PostgresStore:
        """Connect to `url` and migrate its schema (`schema`, created if missing)."""
        pool = Pool(url, schema, pool_size)
        try:
            async with pool.connection() as conn:
                await migrate_postgres(conn, clock, schema)
            listening = await _listening_connection(pool)
        except psycopg.Error as exc:
            await pool.close()
            raise StoreError(f"cannot open PostgreSQL database: {exc}") from exc
        except BaseException:
            await pool.close()
            raise
        store = cls(pool, clock, new_id, schema)
        store._listening = listening
        store._listener = asyncio.get_running_loop().create_task(store._listen())
        return store

    # -- tenants and runs ---------------------------------------------------------------

    async def create_tenant(self, tenant_id: str, name: str) -> None:
        async def body(tx: Tx) -> None:
            if not await tx.run(
                "INSERT INTO tenants (id, name, created_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING",
                (tenant_id, rows.text(name), self._clock()),
            ):
                raise Conflict(f"tenant {tenant_id!r} already exists")

        await self._transact(body)

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

        async def existing(tx: Tx) -> tuple[RunRecord, list[JobRecord]] | None:
            row = await tx.one(
                f"SELECT {rows.RUN_COLUMNS} FROM workflow_runs "
                "WHERE tenant_id = %s AND idempotency_key = %s",
                (run.tenant_id, run.idempotency_key),
            )
            return None if row is None else (rows.run(row), await self._jobs_of(tx, row[0]))

        if run.idempotency_key is not None and (found := await self._read(existing)):
            return found
        identity = {
            "tenant": run.tenant_id,
            "repository": run.repository_id,
            "repository_key": run.repository_id or "",
            "path": rows.text(run.workflow_path),
        }
        number = run.run_number
        # The number is drawn by the creating statement itself when nothing decided
        # before it reads the number; else first, on its own (see postgres_creation).
        numbered_late = number is None and group_of is None and not queue_now_reads_number
        if number is None and not numbered_late:
            drawn = await self._statement(NEXT_RUN_NUMBER[run.repository_id is None], identity)
            if drawn is None:
                raise NotFound(f"tenant {run.tenant_id!r} not found")
            number = int(drawn[0])
        run_id = self._new_id()
        values = {
            **identity,
            "id": run_id,
            "name": rows.text(run.workflow_name),
            "event": rows.text(run.event),
            "payload": payload,
            "ref": rows.optional_text(run.ref),
            "sha": rows.optional_text(run.sha),
            "inputs": inputs,
            "attempt": run.attempt,
            "number": number or 0,
            "key": run.idempotency_key,
            "now": now,
            "workflow": run.workflow_id,
            "version": run.workflow_version,
            "group": run.concurrency_group,
        }
        # The run as it will be stored, for the decisions taken before it is.
        record = rows.run(new_run_row(values))
        if group_of is not None:
            group = group_of(record)
            values["group"] = group
            record = replace(record, concurrency_group=group)
        queued = None if queue_now is None else queue_now(record)
        # (id, key, name, needs, labels, matrix, spec, status, created_at, queued_at)
        job_rows = [(self._new_id(), *job) for job in rows.new_job_rows(jobs, queued, now)]
        events = [(EventKind.RUN_CREATED.value, None, rows.run_created(jobs, queued))]
        events += [
            (EventKind.JOB_QUEUED.value, job_id, rows.new_job_event(key, status))
            for job_id, key, *_, status, _, _ in job_rows
            if status == JobStatus.QUEUED
        ]
        flags = Signals.flags([(kind, run_id, data) for kind, _, data in events])
        params = {
            **values,
            **creation_rows(job_rows, events, run.carried_jobs),
            "carried_from": run.carried_from if run.carried_jobs else None,
            "outbox_lock": self._outbox_lock,
            "channel": CHANNEL,
            "notice": f"{self._notice}|{flags}",
            "flags": flags,
        }
        creation = CREATE_NUMBERED_RUN[run.repository_id is None] if numbered_late else CREATE_RUN
        created = await self._statement_all(creation, params)
        if not created:  # a concurrent creation with the same key committed first, or
            found = await self._read(existing) if run.idempotency_key is not None else None
            if found is not None:
                return found
            tenant = run.tenant_id  # the workflow changed, or there is no such tenant
            if run.workflow_version is not None and await self._read(
                lambda tx: self._exists(tx, "tenants", tenant)
            ):
                raise StaleWorkflow(f"workflow {run.workflow_id!r} changed since it was read")
            raise NotFound(f"tenant {tenant!r} not found")
        if flags:
            self._signals.committed(flags)
        by_id = {
            row[rows.RUN_WIDTH]: rows.job(row[rows.RUN_WIDTH : rows.RUN_WIDTH + rows.JOB_WIDTH])
            for row in created
            if row[rows.RUN_WIDTH] is not None
        }
        return rows.run(created[0][: rows.RUN_WIDTH]), [by_id[job[0]] for job in job_rows]

    async def get_run(self, run_id: str, *, tenant_id: str | None = None) -> RunRecord:
        row = await self._one(_RUN, {"id": run_id, "tenant": tenant_id})
        if row is None:
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
        query, params = rows.run_listing(
            "%s",
            tenant_id,
            status=status,
            branch=branch,
            workflow_id=workflow_id,
            event=event,
            concurrency_group=concurrency_group,
            after=after,
            limit=limit,
        )

        async def body(tx: Tx) -> list[RunRecord]:
            if after is not None and not await tx.one(
                "SELECT 1 FROM workflow_runs WHERE id = %s AND tenant_id = %s", (after, tenant_id)
            ):
                raise NotFound(f"run {after!r} not found")
            return [rows.run(row) for row in await tx.all(query, params)]

        return await self._read(body)

    async def complete_run(self, run_id: str, conclusion: Conclusion) -> RunRecord:
        now = self._clock()

        async def body(tx: Tx) -> RunRecord:
            row = await tx.one(_COMPLETE_RUN, (conclusion.value, now, run_id))
            if row is None:
                found = await tx.one("SELECT status FROM workflow_runs WHERE id = %s", (run_id,))
                if found is None:
                    raise NotFound(f"run {run_id!r} not found")
                if found[0] == RunStatus.COMPLETED:
                    raise Conflict(f"run {run_id!r} is already completed")
                raise Conflict(f"run {run_id!r} still has unfinished jobs")
            record = rows.run(row)
            data = rows.run_completed(record.status, conclusion, record.concurrency_group)
            tx.emit(EventKind.RUN_COMPLETED, run_id, None, data, now)
            return record

        return await self._transact(body)

    async def cancel_run(self, run_id: str, *, reason: str = "run cancelled") -> list[JobRecord]:
        now = self._clock()
        reason = rows.text(reason)

        async def body(tx: Tx) -> list[JobRecord]:
            found = await tx.one("SELECT status FROM workflow_runs WHERE id = %s", (run_id,))
            if found is None:
                raise NotFound(f"run {run_id!r} not found")
            if found[0] == RunStatus.COMPLETED:
                raise Conflict(f"run {run_id!r} is already completed")
            cancelled = {row[0] for row in await tx.all(_CANCEL_RUN_JOBS, (reason, now, run_id))}
            asked = {row[0] for row in await tx.all(_ASK_RUN_JOBS_TO_STOP, (reason, run_id))}
            changed = [
                job for job in await self._jobs_of(tx, run_id) if job.id in cancelled | asked
            ]
            for job in changed:
                kind = (
                    EventKind.JOB_COMPLETED
                    if job.id in cancelled
                    else EventKind.JOB_CANCEL_REQUESTED
                )
                tx.emit(kind, run_id, job.id, rows.job_event(job), now)
            return changed

        return await self._transact(body)

    # -- outbox -------------------------------------------------------------------------------

    async def events_after(self, cursor: int, limit: int = 100) -> list[OutboxEvent]:
        self._signals.outbox.looked()
        found = await self._all(
            f"SELECT {rows.EVENT_COLUMNS} FROM outbox WHERE id > %s ORDER BY id LIMIT %s",
            (cursor, max(limit, 0)),
        )
        return [rows.event(row) for row in found]

    async def get_cursor(self, consumer: str) -> int:
        row = await self._one(
            "SELECT position FROM consumer_cursors WHERE consumer = %s", (consumer,)
        )
        return 0 if row is None else int(row[0])

    async def advance_cursor(self, consumer: str, expected: int, new: int) -> bool:
        now = self._clock()

        async def body(tx: Tx) -> bool:
            if expected == 0:  # a cursor that was never stored is at 0
                changed = await tx.run(
                    "INSERT INTO consumer_cursors (consumer, position, updated_at) "
                    "VALUES (%s, %s, %s) ON CONFLICT (consumer) DO UPDATE "
                    "SET position = excluded.position, updated_at = excluded.updated_at "
                    "WHERE consumer_cursors.position = 0",
                    (consumer, new, now),
                )
            else:
                changed = await tx.run(
                    "UPDATE consumer_cursors SET position = %s, updated_at = %s "
                    "WHERE consumer = %s AND position = %s",
                    (new, now, consumer, expected),
                )
            return changed == 1

        return await self._transact(body)

    async def wait_for_event(self, timeout: float) -> None:
        self._ensure_listening()
        await self._signals.outbox.wait(timeout)

    async def wait_for_queued(self, timeout: float) -> None:
        self._ensure_listening()
        await self._signals.queue.wait(timeout)

    def cancels_looked(self) -> None:
        self._signals.cancels.looked()

    async def wait_for_cancel(self, timeout: float) -> None:
        self._ensure_listening()
        await self._signals.cancels.wait(timeout)

    def _ensure_listening(self) -> None:
        if self._pool.closed:
            raise StoreError("the store is closed")
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        """Wake waiters on every NOTIFY; when the connection fails, waiters fall back to polling."""
        try:
            if self._listening is None:  # listening again after a failure
                self._listening = await _listening_connection(self._pool)
                self._signals.committed("scq")  # what was committed meanwhile went unheard
            async for note in self._listening.notifies():
                # Our own commits woke the waiters already; other schemas' are not ours.
                schema, bar, flags = note.payload.rpartition("|")
                if not bar:  # a server from before the flags: it may concern anyone
                    schema, flags = note.payload, "scq"
                if schema == self._notice and note.pid not in self._pool.backend_pids:
                    self._signals.committed(flags)
        except psycopg.Error:
            await self._stop_listening()

    async def _stop_listening(self) -> None:
        conn, self._listening = self._listening, None
        if conn is not None:
            await conn.close()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        with translated():
            await self._stop_listening()
            await self._pool.close()

"""How the scheduler and the reaper move jobs in the PostgreSQL store.

The same transitions as `sqlite_jobs`: the scheduler queues, skips, fails or
cancels a job no runner holds, and only asks a leased job to stop; the
reaper takes back expired leases. Each UPDATE re-checks its condition on
the row it locks, so two schedulers or two reapers never both move a job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from conveyor.engine.records import EventKind, JobInstance, JobRecord
from conveyor.engine.states import LEASED, Conclusion, JobStatus, allowed_from
from conveyor.errors import Conflict, NotFound
from conveyor.store import rows
from conveyor.store.postgres_base import LEASED_IN, PostgresBase, Tx

_J = rows.JOB_COLUMNS

_QUEUE_JOB = f"""
    UPDATE jobs SET status = 'queued', name = %s, matrix = %s, spec = %s,
        labels = COALESCE(%s, labels), queued_at = %s
    WHERE id = %s AND status IN {rows.in_list(allowed_from(JobStatus.QUEUED) - LEASED)}
    RETURNING {_J}
"""
_INSERT_INSTANCE = f"""
    INSERT INTO jobs (id, run_id, tenant_id, key, name, needs, labels, matrix, spec, status,
        created_at, queued_at)
    SELECT %s, run_id, tenant_id, key, %s, needs, COALESCE(%s, labels), %s, %s, 'queued', %s, %s
    FROM jobs WHERE id = %s
    RETURNING {_J}
"""
_SKIP_JOB = f"""
    UPDATE jobs SET status = 'skipped', conclusion = 'skipped', reason = %s, completed_at = %s
    WHERE id = %s AND status IN {rows.in_list(allowed_from(JobStatus.SKIPPED))}
    RETURNING {_J}
"""
_FAIL_PENDING = f"""
    UPDATE jobs SET status = 'failed', conclusion = 'failure', reason = %s, completed_at = %s
    WHERE id = %s AND status IN {rows.in_list(allowed_from(JobStatus.FAILED) - LEASED)}
    RETURNING {_J}
"""
_CARRY_OVER = f"""
    UPDATE jobs SET status = 'completed', conclusion = %s, outputs = %s, reason = %s,
        completed_at = %s
    WHERE id = %s AND status IN {rows.in_list(allowed_from(JobStatus.COMPLETED) - LEASED)}
    RETURNING {_J}
"""
UNLEASED_CANCELLABLE = rows.in_list(allowed_from(JobStatus.CANCELLED) - LEASED)
_CANCEL_JOB = f"""
    UPDATE jobs SET status = 'cancelled', conclusion = 'cancelled', reason = %s,
        completed_at = %s
    WHERE id = %s AND status IN {UNLEASED_CANCELLABLE}
    RETURNING {_J}
"""
_ASK_JOB_TO_STOP = f"""
    UPDATE jobs SET cancel_requested = TRUE, reason = %s
    WHERE id = %s AND status IN {LEASED_IN} AND NOT cancel_requested
    RETURNING {_J}
"""
_EXPIRED = f"""
    SELECT id, lease_epoch, retry_count, cancel_requested FROM jobs
    WHERE status IN {LEASED_IN} AND lease_expires_at < %s
    ORDER BY lease_expires_at, seq
"""
_REQUEUE = f"""
    UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
        retry_count = retry_count + 1, queued_at = %s, started_at = NULL
    WHERE id = %s AND lease_epoch = %s AND lease_expires_at < %s
      AND status IN {rows.in_list(allowed_from(JobStatus.QUEUED) & LEASED)}
    RETURNING {_J}
"""
_LOSE = f"""
    UPDATE jobs SET status = %s, conclusion = %s, reason = 'runner lost', completed_at = %s,
        lease_expires_at = NULL
    WHERE id = %s AND lease_epoch = %s AND lease_expires_at < %s AND status IN {LEASED_IN}
    RETURNING {_J}
"""

# A page of a run's jobs in the workflow's order: by the seq of the key's first row, then
# by their own; the position of the cursor job is read from the same rows.
_JOB_PAGE = f"""
    WITH ordered AS (
        SELECT {_J}, MIN(seq) OVER (PARTITION BY key) AS first_seq, seq
        FROM jobs WHERE run_id = %(run)s
    )
    SELECT {_J} FROM ordered
    WHERE %(after)s::text IS NULL
       OR (first_seq, seq) > (SELECT first_seq, seq FROM ordered WHERE id = %(after)s::text)
    ORDER BY first_seq, seq LIMIT %(limit)s
"""
_JOB_OF_RUN = "SELECT 1 FROM jobs WHERE id = %s AND run_id = %s"


class PostgresJobSide(PostgresBase):
    """The scheduler's and the reaper's job operations of `PostgresStore`."""

    async def list_jobs(self, run_id: str) -> list[JobRecord]:
        async def body(tx: Tx) -> list[JobRecord]:
            jobs = await self._jobs_of(tx, run_id)
            if not jobs and not await self._exists(tx, "workflow_runs", run_id):
                raise NotFound(f"run {run_id!r} not found")
            return jobs

        return await self._read(body)

    async def list_jobs_page(
        self, run_id: str, *, after: str | None = None, limit: int = 50
    ) -> list[JobRecord]:
        params = {"run": run_id, "after": after, "limit": max(limit, 0)}

        async def body(tx: Tx) -> list[JobRecord]:
            if not await self._exists(tx, "workflow_runs", run_id):
                raise NotFound(f"run {run_id!r} not found")
            if after is not None and not await tx.one(_JOB_OF_RUN, (after, run_id)):
                raise NotFound(f"job {after!r} is not one of run {run_id!r}'s jobs")
            return [rows.job(row) for row in await tx.all(_JOB_PAGE, params)]

        return await self._read(body)

    async def get_job(self, job_id: str) -> JobRecord:
        row = await self._one(f"SELECT {_J} FROM jobs WHERE id = %s", (job_id,))
        if row is None:
            raise NotFound(f"job {job_id!r} not found")
        return rows.job(row)

    async def queue_job(self, job_id: str, instances: Sequence[JobInstance]) -> list[JobRecord]:
        if not instances:
            raise ValueError("queue_job needs at least one job instance")
        values = [
            (
                rows.text(instance.name),
                rows.dump_optional(instance.matrix),
                rows.dump(instance.spec),
                None if instance.labels is None else rows.dump_labels(instance.labels),
            )
            for instance in instances
        ]
        now = self._clock()

        async def body(tx: Tx) -> list[JobRecord]:
            name, matrix, spec, labels = values[0]
            row = await tx.one(_QUEUE_JOB, (name, matrix, spec, labels, now, job_id))
            if row is None:
                raise await self._refusal(tx, job_id, "queue")
            queued = [rows.job(row)]
            for name, matrix, spec, labels in values[1:]:
                row = await tx.one(
                    _INSERT_INSTANCE, (self._new_id(), name, labels, matrix, spec, now, now, job_id)
                )
                assert row is not None  # the original row is locked by the update above
                queued.append(rows.job(row))
            for job in queued:
                tx.emit(EventKind.JOB_QUEUED, job.run_id, job.id, rows.job_event(job), now)
            return queued

        return await self._transact(body)

    async def skip_job(self, job_id: str, reason: str) -> JobRecord:
        return await self._end_unleased(_SKIP_JOB, job_id, reason, "skip", with_reason=False)

    async def fail_pending(self, job_id: str, reason: str) -> JobRecord:
        return await self._end_unleased(_FAIL_PENDING, job_id, reason, "fail", with_reason=True)

    async def _end_unleased(
        self, query: str, job_id: str, reason: str, action: str, *, with_reason: bool
    ) -> JobRecord:
        now = self._clock()

        async def body(tx: Tx) -> JobRecord:
            row = await tx.one(query, (rows.text(reason), now, job_id))
            if row is None:
                raise await self._refusal(tx, job_id, action)
            job = rows.job(row)
            data = rows.job_event(job)
            if with_reason:
                data = {**data, "reason": job.reason}
            tx.emit(EventKind.JOB_COMPLETED, job.run_id, job.id, data, now)
            return job

        return await self._transact(body)

    async def carry_over_job(
        self, job_id: str, conclusion: Conclusion, outputs: Mapping[str, str]
    ) -> JobRecord:
        now = self._clock()
        values = (*rows.carried(conclusion, outputs), now, job_id)

        async def body(tx: Tx) -> JobRecord:
            row = await tx.one(_CARRY_OVER, values)
            if row is None:
                raise await self._refusal(tx, job_id, "carry over")
            job = rows.job(row)
            tx.emit(EventKind.JOB_COMPLETED, job.run_id, job.id, rows.job_event(job), now)
            return job

        return await self._transact(body)

    async def cancel_job(self, job_id: str, reason: str) -> JobRecord:
        now = self._clock()
        reason = rows.text(reason)

        async def body(tx: Tx) -> JobRecord:
            row = await tx.one(_CANCEL_JOB, (reason, now, job_id))
            kind = EventKind.JOB_COMPLETED
            if row is None:
                row = await tx.one(_ASK_JOB_TO_STOP, (reason, job_id))
                kind = EventKind.JOB_CANCEL_REQUESTED
            if row is None:
                current = await tx.one(f"SELECT {_J} FROM jobs WHERE id = %s", (job_id,))
                if current is None:
                    raise NotFound(f"job {job_id!r} not found")
                job = rows.job(current)
                if job.status in LEASED:  # already asked to stop
                    return job
                raise Conflict(f"cannot cancel job {job_id!r}: it is {job.status}")
            job = rows.job(row)
            tx.emit(kind, job.run_id, job.id, rows.job_event(job), now)
            return job

        return await self._transact(body)

    async def reap_expired(self, max_retries: int) -> list[JobRecord]:
        now = self._clock()

        async def body(tx: Tx) -> list[JobRecord]:
            reaped: list[JobRecord] = []
            for job_id, epoch, retries, cancel in await tx.all(_EXPIRED, (now,)):
                if retries < max_retries and not cancel:
                    row = await tx.one(_REQUEUE, (now, job_id, epoch, now))
                    kind = EventKind.JOB_REQUEUED
                else:
                    status, conclusion = (
                        (JobStatus.CANCELLED, Conclusion.CANCELLED)
                        if cancel
                        else (JobStatus.FAILED, Conclusion.FAILURE)
                    )
                    values = (status.value, conclusion.value, now, job_id, epoch, now)
                    row = await tx.one(_LOSE, values)
                    kind = EventKind.JOB_COMPLETED
                if row is None:  # another reaper, or the runner itself, got there first
                    continue
                job = rows.job(row)
                data = {**rows.job_event(job), "retry_count": job.retry_count}
                tx.emit(kind, job.run_id, job.id, data, now)
                reaped.append(job)
            return reaped

        return await self._transact(body)

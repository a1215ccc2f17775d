"""How the scheduler and the reaper move jobs in the SQLite store.

The scheduler queues, skips, fails or cancels a job that no runner holds;
a job a runner holds is only asked to stop (`cancel_requested`), and its
runner reports the end. The reaper takes back expired leases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from conveyor.engine.records import EventKind, JobInstance, JobRecord
from conveyor.engine.states import LEASED, Conclusion, JobStatus, allowed_from
from conveyor.errors import Conflict, NotFound
from conveyor.store import rows
from conveyor.store.sqlite_base import LEASED_IN, SqliteBase

_J = rows.JOB_COLUMNS

_QUEUE_JOB = f"""
    UPDATE jobs SET status = 'queued', name = ?, matrix = ?, spec = ?,
        labels = COALESCE(?, labels), queued_at = ?
    WHERE id = ? AND status IN {rows.in_list(allowed_from(JobStatus.QUEUED) - LEASED)}
    RETURNING {_J}
"""
_INSERT_INSTANCE = f"""
    INSERT INTO jobs (id, run_id, tenant_id, key, name, needs, labels, matrix, spec, status,
        created_at, queued_at)
    SELECT ?, run_id, tenant_id, key, ?, needs, COALESCE(?, labels), ?, ?, 'queued', ?, ?
    FROM jobs WHERE id = ?
    RETURNING {_J}
"""
_SKIP_JOB = f"""
    UPDATE jobs SET status = 'skipped', conclusion = 'skipped', reason = ?, completed_at = ?
    WHERE id = ? AND status IN {rows.in_list(allowed_from(JobStatus.SKIPPED))}
    RETURNING {_J}
"""
_FAIL_PENDING = f"""
    UPDATE jobs SET status = 'failed', conclusion = 'failure', reason = ?, completed_at = ?
    WHERE id = ? AND status IN {rows.in_list(allowed_from(JobStatus.FAILED) - LEASED)}
    RETURNING {_J}
"""
_CARRY_OVER = f"""
    UPDATE jobs SET status = 'completed', conclusion = ?, outputs = ?, reason = ?,
        completed_at = ?
    WHERE id = ? AND status IN {rows.in_list(allowed_from(JobStatus.COMPLETED) - LEASED)}
    RETURNING {_J}
"""
UNLEASED_CANCELLABLE = rows.in_list(allowed_from(JobStatus.CANCELLED) - LEASED)
_CANCEL_JOB = f"""
    UPDATE jobs SET status = 'cancelled', conclusion = 'cancelled', reason = ?, completed_at = ?
    WHERE id = ? AND status IN {UNLEASED_CANCELLABLE}
    RETURNING {_J}
"""
_ASK_JOB_TO_STOP = f"""
    UPDATE jobs SET cancel_requested = 1, reason = ?
    WHERE id = ? AND status IN {LEASED_IN} AND cancel_requested = 0
    RETURNING {_J}
"""
_EXPIRED = f"""
    SELECT id, lease_epoch, retry_count, cancel_requested FROM jobs
    WHERE status IN {LEASED_IN} AND lease_expires_at < ?
    ORDER BY lease_expires_at
"""
_REQUEUE = f"""
    UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL,
        retry_count = retry_count + 1, queued_at = ?, started_at = NULL
    WHERE id = ? AND lease_epoch = ? AND lease_expires_at < ?
      AND status IN {rows.in_list(allowed_from(JobStatus.QUEUED) & LEASED)}
    RETURNING {_J}
"""
_LOSE = f"""
    UPDATE jobs SET status = ?, conclusion = ?, reason = 'runner lost', completed_at = ?,
        lease_expires_at = NULL
    WHERE id = ? AND lease_epoch = ? AND lease_expires_at < ? AND status IN {LEASED_IN}
    RETURNING {_J}
"""
# A page of a run's jobs in the workflow's order: by the rowid of the key's first row,
# then by their own; the position of job ?2 (the cursor) is read from the same rows.
_JOB_PAGE = f"""
    WITH ordered AS (
        SELECT {_J}, MIN(rowid) OVER (PARTITION BY key) AS first_seq, rowid AS seq
        FROM jobs WHERE run_id = ?1
    )
    SELECT {_J} FROM ordered
    WHERE ?2 IS NULL OR (first_seq, seq) > (SELECT first_seq, seq FROM ordered WHERE id = ?2)
    ORDER BY first_seq, seq LIMIT ?3
"""
_JOB_OF_RUN = "SELECT 1 FROM jobs WHERE id = ? AND run_id = ?"


class SqliteJobSide(SqliteBase):
    """The scheduler's and the reaper's job operations of `SqliteStore`."""

    async def list_jobs(self, run_id: str) -> list[JobRecord]:
        with self._read() as db:
            jobs = self._jobs_of(db, run_id)
            if (
                not jobs
                and db.execute("SELECT 1 FROM workflow_runs WHERE id = ?", (run_id,)).fetchone()
                is None
            ):
                raise NotFound(f"run {run_id!r} not found")
        return jobs

    async def list_jobs_page(
        self, run_id: str, *, after: str | None = None, limit: int = 50
    ) -> list[JobRecord]:
        with self._read() as db:
            if db.execute("SELECT 1 FROM workflow_runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise NotFound(f"run {run_id!r} not found")
            if after is not None and db.execute(_JOB_OF_RUN, (after, run_id)).fetchone() is None:
                raise NotFound(f"job {after!r} is not one of run {run_id!r}'s jobs")
            found = db.execute(_JOB_PAGE, (run_id, after, max(limit, 0))).fetchall()
        return [rows.job(row) for row in found]

    async def get_job(self, job_id: str) -> JobRecord:
        with self._read() as db:
            row = db.execute(f"SELECT {_J} FROM jobs WHERE id = ?", (job_id,)).fetchone()
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
        with self._write() as db:
            name, matrix, spec, labels = values[0]
            row = db.execute(_QUEUE_JOB, (name, matrix, spec, labels, now, job_id)).fetchone()
            if row is None:
                raise self._refusal(db, job_id, "queue")
            queued = [rows.job(row)]
            for name, matrix, spec, labels in values[1:]:
                row = db.execute(
                    _INSERT_INSTANCE, (self._new_id(), name, labels, matrix, spec, now, now, job_id)
                ).fetchone()
                queued.append(rows.job(row))
            for job in queued:
                self._emit(db, EventKind.JOB_QUEUED, job.run_id, job.id, rows.job_event(job), now)
            return queued

    async def skip_job(self, job_id: str, reason: str) -> JobRecord:
        now = self._clock()
        with self._write() as db:
            row = db.execute(_SKIP_JOB, (rows.text(reason), now, job_id)).fetchone()
            if row is None:
                raise self._refusal(db, job_id, "skip")
            job = rows.job(row)
            self._emit(db, EventKind.JOB_COMPLETED, job.run_id, job.id, rows.job_event(job), now)
            return job

    async def fail_pending(self, job_id: str, reason: str) -> JobRecord:
        now = self._clock()
        with self._write() as db:
            row = db.execute(_FAIL_PENDING, (rows.text(reason), now, job_id)).fetchone()
            if row is None:
                raise self._refusal(db, job_id, "fail")
            job = rows.job(row)
            data = {**rows.job_event(job), "reason": job.reason}
            self._emit(db, EventKind.JOB_COMPLETED, job.run_id, job.id, data, now)
            return job

    async def carry_over_job(
        self, job_id: str, conclusion: Conclusion, outputs: Mapping[str, str]
    ) -> JobRecord:
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                _CARRY_OVER, (*rows.carried(conclusion, outputs), now, job_id)
            ).fetchone()
            if row is None:
                raise self._refusal(db, job_id, "carry over")
            job = rows.job(row)
            self._emit(db, EventKind.JOB_COMPLETED, job.run_id, job.id, rows.job_event(job), now)
            return job

    async def cancel_job(self, job_id: str, reason: str) -> JobRecord:
        now = self._clock()
        reason = rows.text(reason)
        with self._write() as db:
            row = db.execute(_CANCEL_JOB, (reason, now, job_id)).fetchone()
            kind = EventKind.JOB_COMPLETED
            if row is None:
                row = db.execute(_ASK_JOB_TO_STOP, (reason, job_id)).fetchone()
                kind = EventKind.JOB_CANCEL_REQUESTED
            if row is None:
                current = db.execute(f"SELECT {_J} FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if current is None:
                    raise NotFound(f"job {job_id!r} not found")
                job = rows.job(current)
                if job.status in LEASED:  # already asked to stop
                    return job
                raise Conflict(f"cannot cancel job {job_id!r}: it is {job.status}")
            job = rows.job(row)
            self._emit(db, kind, job.run_id, job.id, rows.job_event(job), now)
            return job

    async def reap_expired(self, max_retries: int) -> list[JobRecord]:
        now = self._clock()
        reaped: list[JobRecord] = []
        with self._write() as db:
            for job_id, epoch, retries, cancel in db.execute(_EXPIRED, (now,)).fetchall():
                if retries < max_retries and not cancel:
                    row = db.execute(_REQUEUE, (now, job_id, epoch, now)).fetchone()
                    kind = EventKind.JOB_REQUEUED
                else:
                    status, conclusion = (
                        (JobStatus.CANCELLED, Conclusion.CANCELLED)
                        if cancel
                        else (JobStatus.FAILED, Conclusion.FAILURE)
                    )
                    values = (status.value, conclusion.value, now, job_id, epoch, now)
                    row = db.execute(_LOSE, values).fetchone()
                    kind = EventKind.JOB_COMPLETED
                if row is None:  # another reaper (on PostgreSQL) took it first
                    continue
                job = rows.job(row)
                data = {**rows.job_event(job), "retry_count": job.retry_count}
                self._emit(db, kind, job.run_id, job.id, data, now)
                reaped.append(job)
        return reaped

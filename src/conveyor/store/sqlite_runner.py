"""What runners write to the SQLite store: leases, steps, logs and job completion.

Each write after `acquire_job` carries the lease epoch it was given and is
accepted only while that epoch still holds the job's lease (job ACQUIRED or
RUNNING with that epoch); otherwise it raises LeaseLost and changes nothing.
A step row written under an earlier epoch (a previous attempt of the job)
counts as PENDING to the current one. Ending a run's last unfinished job
also concludes the run, in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from conveyor.engine.records import EventKind, JobRecord, LogLine, StepRecord
from conveyor.engine.reports import (
    JobEnded,
    JobStarted,
    LogLines,
    ReportEvent,
    StepEnded,
    StepFinish,
    StepStarted,
)
from conveyor.engine.states import (
    LEASED,
    Conclusion,
    JobStatus,
    RunStatus,
    StepStatus,
    allowed_from,
    is_terminal,
)
from conveyor.errors import Conflict, NotFound
from conveyor.store import rows
from conveyor.store.sqlite_base import LEASED_IN, SqliteBase

_J = rows.JOB_COLUMNS

# A job matches when none of its labels is missing from the runner's.
_ACQUIRE_JOB = f"""
    UPDATE jobs SET status = 'acquired', lease_owner = ?1, lease_epoch = lease_epoch + 1,
        lease_expires_at = ?2, report_seq = 0, handed_with = ?5
    WHERE id = (
        SELECT candidate.id FROM jobs AS candidate
        WHERE candidate.status = 'queued'
          AND (?3 IS NULL OR candidate.tenant_id = ?3)
          AND NOT EXISTS (
              SELECT 1 FROM json_each(candidate.labels) AS wanted
              WHERE wanted.value NOT IN (SELECT value FROM json_each(?4))
          )
        ORDER BY candidate.queued_at, candidate.rowid
        LIMIT 1
    ) AND status IN {rows.in_list(allowed_from(JobStatus.ACQUIRED))}
    RETURNING {_J}
"""
# A numbered report takes its turn: only one numbered above the last applied goes in.
_CLAIM_REPORT = f"""
    UPDATE jobs SET report_seq = ?
    WHERE id = ? AND lease_epoch = ? AND status IN {LEASED_IN} AND report_seq < ?
    RETURNING run_id
"""
_REPORTED = "SELECT lease_epoch, report_seq, log_seq FROM jobs WHERE id = ?"
# With a report number, the start claims it too (see _CLAIM_REPORT).
_START_JOB = f"""
    UPDATE jobs SET status = 'running', started_at = :now,
        report_seq = COALESCE(:seq, report_seq)
    WHERE id = :id AND lease_epoch = :epoch
      AND status IN {rows.in_list(allowed_from(JobStatus.RUNNING) & LEASED)}
      AND report_seq < COALESCE(:seq, report_seq + 1)
    RETURNING {_J}
"""
_START_RUN = """
    UPDATE workflow_runs SET status = 'in_progress', started_at = ?
    WHERE id = ? AND status = 'queued'
"""
# A job the runner's call leased but the runner never heard of (see Store.hand_again).
# Once: the job forgets the call's name, so a call whose answers never get through
# cannot keep its job's lease alive (the reaper takes it back when it runs out). The
# lease condition spelled as jobs_lease's lets SQLite read that index, not the table.
_HAND_AGAIN = f"""
    UPDATE jobs SET lease_expires_at = ?1, handed_with = NULL
    WHERE id = (
        SELECT id FROM jobs
        WHERE status IN {LEASED_IN} AND status = 'acquired' AND lease_expires_at >= ?2
          AND lease_owner = ?3 AND handed_with = ?4
        LIMIT 1
    )
    RETURNING {_J}
"""
_RENEW_LEASE = f"""
    UPDATE jobs SET lease_expires_at = ?
    WHERE id = ? AND lease_epoch = ? AND status IN {LEASED_IN}
    RETURNING {_J}
"""
_FINISH_JOB = {
    target: f"""
        UPDATE jobs SET status = '{target}', conclusion = ?, outputs = ?,
            reason = COALESCE(?, reason),
            completed_at = ?, lease_expires_at = NULL
        WHERE id = ? AND lease_epoch = ?
          AND status IN {rows.in_list(allowed_from(target) & LEASED)}
        RETURNING {_J}
    """
    for target in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
}
# Once no job of the run is unfinished, the run concludes as the scheduler's rule says:
# failure if any job failed, else cancelled if any was cancelled, else success.
_CONCLUDE_RUN = f"""
    UPDATE workflow_runs SET status = 'completed', completed_at = ?1, conclusion = CASE
        WHEN EXISTS (SELECT 1 FROM jobs WHERE run_id = ?2 AND conclusion = 'failure')
            THEN 'failure'
        WHEN EXISTS (SELECT 1 FROM jobs WHERE run_id = ?2 AND conclusion = 'cancelled')
            THEN 'cancelled'
        ELSE 'success' END
    WHERE id = ?2 AND status IN {rows.in_list(allowed_from(RunStatus.COMPLETED))}
      AND NOT EXISTS (
          SELECT 1 FROM jobs WHERE jobs.run_id = ?2
            AND jobs.status NOT IN {rows.in_list(s for s in JobStatus if is_terminal(s))}
      )
    RETURNING status, conclusion, concurrency_group
"""

_START_STEP = f"""
    INSERT INTO steps (job_id, step_index, epoch, step_id, name, status, started_at)
    VALUES (?, ?, ?, ?, ?, 'running', ?)
    ON CONFLICT (job_id, step_index) DO UPDATE SET
        epoch = excluded.epoch, step_id = excluded.step_id, name = excluded.name,
        status = excluded.status, outcome = NULL, conclusion = NULL, outputs = '{{}}',
        started_at = excluded.started_at, completed_at = NULL
    WHERE {rows.CURRENT_STEP_STATUS} IN {rows.in_list(allowed_from(StepStatus.RUNNING))}
"""


def _finish_step_sql(target: StepStatus) -> str:
    allowed = allowed_from(target)
    if StepStatus.PENDING not in allowed:  # the step must have started in this attempt
        return f"""
            UPDATE steps SET status = '{target}', outcome = :outcome,
                conclusion = :conclusion, outputs = :outputs, completed_at = :now
            WHERE job_id = :job_id AND step_index = :index AND epoch = :epoch
              AND status IN {rows.in_list(allowed)}
        """
    return f"""
        INSERT INTO steps (job_id, step_index, epoch, step_id, name, status, outcome,
            conclusion, outputs, completed_at)
        VALUES (:job_id, :index, :epoch, :step_id, :name, '{target}', :outcome,
            :conclusion, :outputs, :now)
        ON CONFLICT (job_id, step_index) DO UPDATE SET
            status = excluded.status, outcome = excluded.outcome,
            conclusion = excluded.conclusion, outputs = excluded.outputs,
            completed_at = excluded.completed_at,
            started_at = CASE WHEN steps.epoch < excluded.epoch THEN NULL ELSE steps.started_at END,
            step_id = COALESCE(excluded.step_id, steps.step_id),
            name = CASE WHEN excluded.name = '' THEN steps.name ELSE excluded.name END,
            epoch = excluded.epoch
        WHERE {rows.CURRENT_STEP_STATUS} IN {rows.in_list(allowed)}
    """


_FINISH_STEP = {
    target: _finish_step_sql(target)
    for target in (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED)
}
_RESERVE_LOG = f"""
    UPDATE jobs SET log_seq = log_seq + ?
    WHERE id = ? AND lease_epoch = ? AND status IN {LEASED_IN}
    RETURNING log_seq
"""
_INSERT_LOG = "INSERT INTO log_lines (job_id, seq, step_index, text) VALUES (?, ?, ?, ?)"
_READ_LOG = f"""
    SELECT {rows.LOG_COLUMNS} FROM log_lines WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?
"""


class SqliteRunnerSide(SqliteBase):
    """The lease-fenced operations of `SqliteStore`."""

    async def acquire_job(
        self,
        runner_id: str,
        labels: Sequence[str],
        lease_ttl: float,
        *,
        tenant_id: str | None = None,
        request: str | None = None,
    ) -> JobRecord | None:
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be positive, not {lease_ttl}")
        self._signals.queue.looked()
        with self._write() as db:
            job = self._acquire(db, runner_id, labels, lease_ttl, tenant_id, request)
        self._signals.queue.tried(job is not None)
        return job

    async def hand_again(self, runner_id: str, request: str, lease_ttl: float) -> JobRecord | None:
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be positive, not {lease_ttl}")
        with self._write() as db:
            return self._hand_again(db, runner_id, request, lease_ttl)

    def _hand_again(
        self, db: sqlite3.Connection, runner_id: str, request: str, lease_ttl: float
    ) -> JobRecord | None:
        now = self._clock()
        values = (now + lease_ttl, now, rows.text(runner_id), rows.text(request))
        row = db.execute(_HAND_AGAIN, values).fetchone()
        return None if row is None else rows.job(row)

    def _acquire(
        self,
        db: sqlite3.Connection,
        runner_id: str,
        labels: Sequence[str],
        lease_ttl: float,
        tenant_id: str | None,
        request: str | None,
    ) -> JobRecord | None:
        now = self._clock()
        values = (
            rows.text(runner_id),
            now + lease_ttl,
            tenant_id,
            rows.dump_labels(labels),
            rows.optional_text(request),
        )
        row = db.execute(_ACQUIRE_JOB, values).fetchone()
        if row is None:
            return None
        job = rows.job(row)
        self._emit(db, EventKind.JOB_ACQUIRED, job.run_id, job.id, rows.acquired_event(job), now)
        return job

    async def start_job(self, job_id: str, epoch: int) -> JobRecord:
        with self._write() as db:
            job = self._start_job(db, job_id, epoch)
            if job is None:
                raise self._refusal(db, job_id, "start", epoch)
            return job

    def _start_job(
        self, db: sqlite3.Connection, job_id: str, epoch: int, seq: int | None = None
    ) -> JobRecord | None:
        """The started job; None when no row matched (nothing was written)."""
        now = self._clock()
        values = {"now": now, "seq": seq, "id": job_id, "epoch": epoch}
        row = db.execute(_START_JOB, values).fetchone()
        if row is None:
            return None
        job = rows.job(row)
        self._emit(db, EventKind.JOB_STARTED, job.run_id, job.id, rows.job_event(job), now)
        if db.execute(_START_RUN, (now, job.run_id)).rowcount:
            data = {"status": "in_progress"}
            self._emit(db, EventKind.RUN_STARTED, job.run_id, None, data, now)
        return job

    async def renew_lease(self, job_id: str, epoch: int, lease_ttl: float) -> JobRecord:
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be positive, not {lease_ttl}")
        with self._write() as db:
            row = db.execute(_RENEW_LEASE, (self._clock() + lease_ttl, job_id, epoch)).fetchone()
            if row is None:
                raise self._refusal(db, job_id, "renew the lease of", epoch)
            return rows.job(row)

    async def finish_job(
        self,
        job_id: str,
        epoch: int,
        status: JobStatus,
        conclusion: Conclusion,
        outputs: Mapping[str, str],
        reason: str | None = None,
    ) -> JobRecord:
        end = JobEnded(status, conclusion, outputs, reason)
        rows.job_end_statement(
            _FINISH_JOB, end
        )  # a status no job ends in fails before anything is written
        with self._write() as db:
            return self._finish_job(db, job_id, epoch, end)

    def _finish_job(
        self, db: sqlite3.Connection, job_id: str, epoch: int, end: JobEnded
    ) -> JobRecord:
        now = self._clock()
        note = rows.optional_text(end.reason)
        values = (end.conclusion.value, rows.dump(end.outputs), note, now, job_id, epoch)
        row = db.execute(rows.job_end_statement(_FINISH_JOB, end), values).fetchone()
        if row is None:
            raise self._refusal(db, job_id, f"finish ({end.status})", epoch)
        job = rows.job(row)
        data = {**rows.job_event(job), "reason": job.reason}
        self._emit(db, EventKind.JOB_COMPLETED, job.run_id, job.id, data, now)
        concluded = db.execute(_CONCLUDE_RUN, (now, job.run_id)).fetchone()
        if concluded is not None:
            data = rows.run_completed(*concluded)
            self._emit(db, EventKind.RUN_COMPLETED, job.run_id, None, data, now)
        return job

    async def list_steps(self, job_id: str) -> list[StepRecord]:
        with self._read() as db:
            found = db.execute(
                f"SELECT {rows.STEP_COLUMNS} FROM steps WHERE job_id = ? ORDER BY step_index",
                (job_id,),
            ).fetchall()
            if not found and not self._job_exists(db, job_id):
                raise NotFound(f"job {job_id!r} not found")
        return [rows.step(row) for row in found]

    async def start_step(
        self, job_id: str, epoch: int, index: int, step_id: str | None, name: str
    ) -> None:
        with self._write() as db:
            self._start_step(db, job_id, epoch, index, step_id, name)

    async def finish_step(
        self,
        job_id: str,
        epoch: int,
        index: int,
        status: StepStatus,
        outcome: Conclusion | None,
        conclusion: Conclusion | None,
        outputs: Mapping[str, str],
        *,
        step_id: str | None = None,
        name: str = "",
    ) -> None:
        finish = StepFinish(status, outcome, conclusion, outputs, step_id, name)
        finish.statement(_FINISH_STEP)  # a status no step ends in fails before anything is written
        with self._write() as db:
            self._finish_step(db, job_id, epoch, index, finish)

    async def append_log(
        self, job_id: str, epoch: int, lines: Sequence[tuple[int | None, str]]
    ) -> int:
        with self._write() as db:
            return self._append_log(db, job_id, epoch, lines)

    async def report_and_acquire(
        self,
        job_id: str,
        epoch: int,
        events: Sequence[ReportEvent],
        *,
        seq: int | None = None,
        runner_id: str,
        labels: Sequence[str],
        lease_ttl: float,
        tenant_id: str | None = None,
    ) -> tuple[int | None, JobRecord | None]:
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be positive, not {lease_ttl}")
        rows.check_report(events, _FINISH_STEP, _FINISH_JOB)
        # One transaction: a commit writes every page it changed to the WAL, and the
        # report and the acquisition change the same pages of `jobs`.
        request = None if seq is None else rows.report_request(job_id, seq)
        self._signals.queue.looked()
        try:
            with self._write() as db:
                last = self._write_report(db, job_id, epoch, events, seq)
                job = self._acquire(db, runner_id, labels, lease_ttl, tenant_id, request)
        except rows.Replayed as replay:
            if request is None:
                return replay.last_seq, None
            return replay.last_seq, await self.hand_again(runner_id, request, lease_ttl)
        self._signals.queue.tried(job is not None)
        return last, job

    async def apply_report(
        self, job_id: str, epoch: int, events: Sequence[ReportEvent], *, seq: int | None = None
    ) -> int | None:
        rows.check_report(events, _FINISH_STEP, _FINISH_JOB)
        try:
            with self._write() as db:
                return self._write_report(db, job_id, epoch, events, seq)
        except rows.Replayed as replay:
            return replay.last_seq

    def _write_report(
        self,
        db: sqlite3.Connection,
        job_id: str,
        epoch: int,
        events: Sequence[ReportEvent],
        seq: int | None,
    ) -> int | None:
        """The report's writes, in the open transaction; -> the last log line's number."""
        last = None
        # A report that starts the job claims its number with the start.
        rest: Sequence[ReportEvent] = events
        if events and isinstance(events[0], JobStarted):
            if self._start_job(db, job_id, epoch, seq) is None:
                raise self._answered_before(db, job_id, epoch, seq, "start")
            rest = events[1:]
        elif seq is not None and not self._claim(db, job_id, epoch, seq):
            raise self._answered_before(db, job_id, epoch, seq, "report on")
        for event in rest:
            if isinstance(event, JobStarted):
                if self._start_job(db, job_id, epoch) is None:
                    raise self._refusal(db, job_id, "start", epoch)
            elif isinstance(event, StepStarted):
                self._start_step(
                    db, job_id, epoch, event.step_index, event.step_id, event.name, event.at
                )
            elif isinstance(event, LogLines):
                last = self._append_log(db, job_id, epoch, event.lines)
            elif isinstance(event, StepEnded):
                self._finish_step(db, job_id, epoch, event.step_index, event.finish, event.at)
            else:
                self._finish_job(db, job_id, epoch, event)
        return last

    @staticmethod
    def _claim(db: sqlite3.Connection, job_id: str, epoch: int, seq: int) -> bool:
        """Take report number `seq` for the lease; False when it is not above the last."""
        return db.execute(_CLAIM_REPORT, (seq, job_id, epoch, seq)).fetchone() is not None

    def _answered_before(
        self, db: sqlite3.Connection, job_id: str, epoch: int, seq: int | None, action: str
    ) -> Exception:
        """rows.Replayed when report `seq` was applied already; else the refusal of the
        report's first write."""
        if seq is not None:
            reported = db.execute(_REPORTED, (job_id,)).fetchone()
            if reported is not None and rows.applied_before(reported, epoch, seq):
                return rows.Replayed(int(reported[2]))
        return self._refusal(db, job_id, action, epoch)

    def _start_step(
        self,
        db: sqlite3.Connection,
        job_id: str,
        epoch: int,
        index: int,
        step_id: str | None,
        name: str,
        at: float | None = None,
    ) -> None:
        now = rows.not_after(at, self._clock())
        values = (job_id, index, epoch, rows.optional_text(step_id), rows.text(name), now)
        data = rows.step_started(index)
        action = f"start step {index} of"
        self._emit_fenced(db, EventKind.STEP_STARTED, job_id, epoch, data, now, action)
        if not db.execute(_START_STEP, values).rowcount:
            raise _step_refusal(db, job_id, index, epoch, "start")

    def _finish_step(
        self,
        db: sqlite3.Connection,
        job_id: str,
        epoch: int,
        index: int,
        finish: StepFinish,
        at: float | None = None,
    ) -> None:
        now = rows.not_after(at, self._clock())
        values = {
            "job_id": job_id,
            "index": index,
            "epoch": epoch,
            "step_id": rows.optional_text(finish.step_id),
            "name": rows.text(finish.name),
            **rows.step_end_values(finish),
            "now": now,
        }
        data = rows.step_ended(index, finish)
        action = f"finish step {index} of"
        self._emit_fenced(db, EventKind.STEP_COMPLETED, job_id, epoch, data, now, action)
        if not db.execute(finish.statement(_FINISH_STEP), values).rowcount:
            raise _step_refusal(db, job_id, index, epoch, f"finish ({finish.status})")

    def _append_log(
        self,
        db: sqlite3.Connection,
        job_id: str,
        epoch: int,
        lines: Sequence[tuple[int | None, str]],
    ) -> int:
        clean = [(step_index, rows.text(text)) for step_index, text in lines]
        row = db.execute(_RESERVE_LOG, (len(clean), job_id, epoch)).fetchone()
        if row is None:
            raise self._refusal(db, job_id, "append to the log of", epoch)
        last: int = row[0]
        first = last - len(clean) + 1
        db.executemany(
            _INSERT_LOG,
            [(job_id, first + n, step_index, text) for n, (step_index, text) in enumerate(clean)],
        )
        return last

    async def read_log(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[LogLine]:
        with self._read() as db:
            found = db.execute(_READ_LOG, (job_id, after_seq, max(limit, 0))).fetchall()
            if not found and not self._job_exists(db, job_id):
                raise NotFound(f"job {job_id!r} not found")
        return [rows.log_line(row) for row in found]


def _step_refusal(
    db: sqlite3.Connection, job_id: str, index: int, epoch: int, action: str
) -> Conflict:
    """Why a step transition matched no row (the lease itself was checked first)."""
    row = db.execute(
        "SELECT status, epoch FROM steps WHERE job_id = ? AND step_index = ?", (job_id, index)
    ).fetchone()
    status = "pending" if row is None or row[1] < epoch else row[0]
    return Conflict(f"cannot {action} step {index} of job {job_id!r}: it is {status}")

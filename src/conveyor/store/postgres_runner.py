"""What runners write to the PostgreSQL store: leases, steps, logs and job completion.

The same fencing as `sqlite_runner`: each write carries the lease epoch
`acquire_job` handed out and is accepted only while that epoch holds the
job's lease; otherwise LeaseLost and nothing changes. Acquisition takes the
oldest matching QUEUED row with `FOR UPDATE SKIP LOCKED`, so concurrent
runners never wait on each other's candidate, and never share one. Ending
a run's last unfinished job also concludes the run, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import errors

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
)
from conveyor.errors import Conflict, NotFound, StoreError
from conveyor.store import rows
from conveyor.store.postgres_base import (
    ALL_OTHERS_ENDED,
    CHANNEL,
    LEASED_IN,
    PostgresBase,
    Tx,
    run_conclusion,
)
from conveyor.store.postgres_report import (
    ACQUIRED_EVENT,
    WHOLE_JOB,
    WHOLE_JOB_THEN_ACQUIRE,
    WholeJob,
    pick_job,
    whole_job,
    whole_job_params,
)

_J = rows.JOB_COLUMNS

# One statement, so one round trip and its own transaction: the acquisition and
# its outbox row, appended after the outbox lock as every append is (see
# postgres_base). An acquisition concerns neither the scheduler nor polling
# runners, so it notifies nobody.
_ACQUIRE_JOB = f"""
    WITH picked AS ({pick_job("")}),
    turn AS MATERIALIZED (SELECT pg_advisory_xact_lock(%(outbox_lock)s) FROM picked),
    appended AS (
        INSERT INTO outbox (kind, run_id, job_id, data, created_at)
        SELECT {ACQUIRED_EVENT}, %(now)s
        FROM picked, turn
    )
    SELECT {_J} FROM picked
"""
# An acquisition inside a transaction, which appends its outbox row with the others.
_PICK_JOB = pick_job("")
# A job the runner's call leased but the runner never heard of (see Store.hand_again).
# Once: the job forgets the call's name, so a call whose answers never get through
# cannot keep its job's lease alive (the reaper takes it back when it runs out). The
# row lock makes PostgreSQL look at the conditions again (a reaper may have been first).
_HAND_AGAIN = f"""
    UPDATE jobs SET lease_expires_at = %(expires)s, handed_with = NULL
    WHERE id = (
        SELECT id FROM jobs
        WHERE status = 'acquired' AND lease_expires_at >= %(now)s
          AND lease_owner = %(owner)s AND handed_with = %(request)s
        LIMIT 1
        FOR UPDATE
    )
    RETURNING {_J}
"""
# A numbered report takes its turn: only one numbered above the last applied goes
# in. The update also locks the job for the rest of the report.
_CLAIM_REPORT = f"""
    UPDATE jobs SET report_seq = %s
    WHERE id = %s AND lease_epoch = %s AND status IN {LEASED_IN} AND report_seq < %s
    RETURNING run_id
"""
_REPORTED = "SELECT lease_epoch, report_seq, log_seq FROM jobs WHERE id = %s"
# With a report number, the start claims it too (see _CLAIM_REPORT).
_START_JOB = f"""
    UPDATE jobs SET status = 'running', started_at = %(now)s,
        report_seq = COALESCE(%(seq)s::integer, report_seq)
    WHERE id = %(id)s AND lease_epoch = %(epoch)s
      AND status IN {rows.in_list(allowed_from(JobStatus.RUNNING) & LEASED)}
      AND report_seq < COALESCE(%(seq)s::integer, report_seq + 1)
    RETURNING {_J}
"""
# The job's run starts with its first job; the last column says whether it did now.
_START_JOB_AND_RUN = f"""
    WITH started AS ({_START_JOB}),
    run AS (
        UPDATE workflow_runs SET status = 'in_progress', started_at = %(now)s
        WHERE id = (SELECT run_id FROM started) AND status = 'queued'
        RETURNING id
    )
    SELECT started.*, EXISTS (SELECT 1 FROM run) FROM started
"""
_RENEW_LEASE = f"""
    UPDATE jobs SET lease_expires_at = %s
    WHERE id = %s AND lease_epoch = %s AND status IN {LEASED_IN}
    RETURNING {_J}
"""
# The job ends; once no other job of its run is unfinished, the run concludes as the
# scheduler's rule says: failure if any job failed, else cancelled if any was, else
# success. One statement: its subqueries see the jobs as they were before it, the
# ending one included, hence `others`. The last three columns are the run's, when it
# concluded.
_FINISH_JOB = {
    target: f"""
        WITH ended AS (
            UPDATE jobs SET status = '{target}', conclusion = %(conclusion)s,
                outputs = %(outputs)s, reason = COALESCE(%(reason)s, reason),
                completed_at = %(now)s, lease_expires_at = NULL
            WHERE id = %(id)s AND lease_epoch = %(epoch)s
              AND status IN {rows.in_list(allowed_from(target) & LEASED)}
            RETURNING {_J}
        ),
        others AS (
            SELECT jobs.status, jobs.conclusion FROM jobs, ended
            WHERE jobs.run_id = ended.run_id AND jobs.id <> ended.id
        ),
        concluded AS (
            UPDATE workflow_runs SET status = 'completed', completed_at = %(now)s,
                conclusion = {run_conclusion("ended")}
            FROM ended
            WHERE workflow_runs.id = ended.run_id
              AND workflow_runs.status IN {rows.in_list(allowed_from(RunStatus.COMPLETED))}
              AND {ALL_OTHERS_ENDED}
            RETURNING workflow_runs.status, workflow_runs.conclusion,
                workflow_runs.concurrency_group
        )
        SELECT ended.*, concluded.* FROM ended LEFT JOIN concluded ON TRUE
    """
    for target in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
}

_START_STEP = f"""
    INSERT INTO steps (job_id, step_index, epoch, step_id, name, status, started_at)
    VALUES (%s, %s, %s, %s, %s, 'running', %s)
    ON CONFLICT (job_id, step_index) DO UPDATE SET
        epoch = excluded.epoch, step_id = excluded.step_id, name = excluded.name,
        status = excluded.status, outcome = NULL, conclusion = NULL, outputs = '{{}}',
        started_at = excluded.started_at, completed_at = NULL
    WHERE {rows.CURRENT_STEP_STATUS} IN {rows.in_list(allowed_from(StepStatus.RUNNING))}
"""

# A step started and ended in one report: from where its start may happen, straight
# to its end (`status`, one that follows running: rows.whole_steps checks).
_RUN_STEP = f"""
    INSERT INTO steps (job_id, step_index, epoch, step_id, name, status, outcome, conclusion,
        outputs, started_at, completed_at)
    VALUES (%(job_id)s, %(index)s, %(epoch)s, %(step_id)s, %(name)s, %(status)s, %(outcome)s,
        %(conclusion)s, %(outputs)s, %(started)s, %(ended)s)
    ON CONFLICT (job_id, step_index) DO UPDATE SET
        epoch = excluded.epoch, step_id = excluded.step_id, name = excluded.name,
        status = excluded.status, outcome = excluded.outcome, conclusion = excluded.conclusion,
        outputs = excluded.outputs, started_at = excluded.started_at,
        completed_at = excluded.completed_at
    WHERE {rows.CURRENT_STEP_STATUS} IN {rows.in_list(allowed_from(StepStatus.RUNNING))}
"""


def _finish_step_sql(target: StepStatus) -> str:
    allowed = allowed_from(target)
    if StepStatus.PENDING not in allowed:  # the step must have started in this attempt
        return f"""
            UPDATE steps SET status = '{target}', outcome = %(outcome)s,
                conclusion = %(conclusion)s, outputs = %(outputs)s, completed_at = %(now)s
            WHERE job_id = %(job_id)s AND step_index = %(index)s AND epoch = %(epoch)s
              AND status IN {rows.in_list(allowed)}
        """
    return f"""
        INSERT INTO steps (job_id, step_index, epoch, step_id, name, status, outcome,
            conclusion, outputs, completed_at)
        VALUES (%(job_id)s, %(index)s, %(epoch)s, %(step_id)s, %(name)s, '{target}',
            %(outcome)s, %(conclusion)s, %(outputs)s, %(now)s)
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
    UPDATE jobs SET log_seq = log_seq + %s
    WHERE id = %s AND lease_epoch = %s AND status IN {LEASED_IN}
    RETURNING log_seq
"""
_INSERT_LOG = "INSERT INTO log_lines (job_id, seq, step_index, text) VALUES (%s, %s, %s, %s)"
_READ_LOG = f"""
    SELECT {rows.LOG_COLUMNS} FROM log_lines WHERE job_id = %s AND seq > %s ORDER BY seq LIMIT %s
"""


class PostgresRunnerSide(PostgresBase):
    """The lease-fenced operations of `PostgresStore`."""

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
        params = self._acquisition(runner_id, labels, lease_ttl, tenant_id, request)
        self._signals.queue.looked()
        row = await self._statement(_ACQUIRE_JOB, params)
        self._signals.queue.tried(row is not None)
        return None if row is None else rows.job(row)

    async def hand_again(self, runner_id: str, request: str, lease_ttl: float) -> JobRecord | None:
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be positive, not {lease_ttl}")
        now = self._clock()
        params = {
            "expires": now + lease_ttl,
            "now": now,
            "owner": rows.text(runner_id),
            "request": rows.text(request),
        }
        row = await self._statement(_HAND_AGAIN, params)
        return None if row is None else rows.job(row)

    async def start_job(self, job_id: str, epoch: int) -> JobRecord:
        async def body(tx: Tx) -> JobRecord:
            job = await self._start_job(tx, job_id, epoch)
            if job is None:
                raise await self._refusal(tx, job_id, "start", epoch)
            return job

        return await self._transact(body)

    async def _start_job(
        self, tx: Tx, job_id: str, epoch: int, seq: int | None = None
    ) -> JobRecord | None:
        """The started job; None when no row matched (nothing was written)."""
        now = self._clock()
        params = {"now": now, "seq": seq, "id": job_id, "epoch": epoch}
        row = await tx.one(_START_JOB_AND_RUN, params)
        if row is None:
            return None
        *columns, run_started = row
        job = rows.job(tuple(columns))
        tx.emit(EventKind.JOB_STARTED, job.run_id, job.id, rows.job_event(job), now)
        if run_started:
            tx.emit(EventKind.RUN_STARTED, job.run_id, None, {"status": "in_progress"}, now)
        return job

    async def renew_lease(self, job_id: str, epoch: int, lease_ttl: float) -> JobRecord:
        if lease_ttl <= 0:
            raise ValueError(f"lease_ttl must be positive, not {lease_ttl}")
        expires = self._clock() + lease_ttl

        async def body(tx: Tx) -> JobRecord:
            row = await tx.one(_RENEW_LEASE, (expires, job_id, epoch))
            if row is None:
                raise await self._refusal(tx, job_id, "renew the lease of", epoch)
            return rows.job(row)

        return await self._transact(body)

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
        rows.job_end_statement(_FINISH_JOB, end)  # a status no job ends in fails before writing
        return await self._transact(lambda tx: self._finish_job(tx, job_id, epoch, end))

    async def _finish_job(self, tx: Tx, job_id: str, epoch: int, end: JobEnded) -> JobRecord:
        now = self._clock()
        values = {
            "conclusion": end.conclusion.value,
            "outputs": rows.dump(end.outputs),
            "reason": rows.optional_text(end.reason),
            "now": now,
            "id": job_id,
            "epoch": epoch,
        }
        row = await tx.one(rows.job_end_statement(_FINISH_JOB, end), values)
        if row is None:
            raise await self._refusal(tx, job_id, f"finish ({end.status})", epoch)
        *columns, run_status, run_conclusion, group = row
        job = rows.job(tuple(columns))
        data = {**rows.job_event(job), "reason": job.reason}
        tx.emit(EventKind.JOB_COMPLETED, job.run_id, job.id, data, now)
        if run_status is not None:
            data = rows.run_completed(run_status, run_conclusion, group)
            tx.emit(EventKind.RUN_COMPLETED, job.run_id, None, data, now)
        return job

    async def list_steps(self, job_id: str) -> list[StepRecord]:
        async def body(tx: Tx) -> list[StepRecord]:
            found = await tx.all(
                f"SELECT {rows.STEP_COLUMNS} FROM steps WHERE job_id = %s ORDER BY step_index",
                (job_id,),
            )
            if not found and not await self._exists(tx, "jobs", job_id):
                raise NotFound(f"job {job_id!r} not found")
            return [rows.step(row) for row in found]

        return await self._read(body)

    async def start_step(
        self, job_id: str, epoch: int, index: int, step_id: str | None, name: str
    ) -> None:
        async def body(tx: Tx) -> None:
            await self._start_step(tx, job_id, epoch, index, step_id, name)

        await self._transact(body)

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

        async def body(tx: Tx) -> None:
            await self._finish_step(tx, job_id, epoch, index, finish)

        await self._transact(body)

    async def append_log(
        self, job_id: str, epoch: int, lines: Sequence[tuple[int | None, str]]
    ) -> int:
        return await self._transact(lambda tx: self._append_log(tx, job_id, epoch, lines))

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
        request = None if seq is None else rows.report_request(job_id, seq)
        whole = whole_job(events)
        if whole is not None:
            acquiring = self._acquisition(runner_id, labels, lease_ttl, tenant_id, request)
            written = await self._whole_job(job_id, epoch, whole, seq, acquiring)
            if written is not None:
                return written
        acquiring = self._acquisition(runner_id, labels, lease_ttl, tenant_id, request)
        self._signals.queue.looked()
        try:
            last, job = await self._apply_report(job_id, epoch, events, seq, acquiring)
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
        whole = whole_job(events)
        if whole is not None:
            written = await self._whole_job(job_id, epoch, whole, seq)
            if written is not None:
                return written[0]
        try:
            return (await self._apply_report(job_id, epoch, events, seq))[0]
        except rows.Replayed as replay:
            return replay.last_seq

    async def _apply_report(
        self,
        job_id: str,
        epoch: int,
        events: Sequence[ReportEvent],
        seq: int | None,
        acquiring: Mapping[str, Any] | None = None,
    ) -> tuple[int | None, JobRecord | None]:
        """The report as separate statements in one transaction, then the acquisition
        `acquiring` describes, in the same one (a report sent again finds the job it
        was handed, or the report not applied); -> the report's answer and the job
        acquired; rows.Replayed for a report applied before."""

        async def body(tx: Tx) -> tuple[int | None, JobRecord | None]:
            # Lock the job row for update first: a FOR SHARE lock taken by a
            # step's fence would need upgrading for the job's own updates later.
            # A report that starts the job locks it (and claims its number) with
            # that very start; another numbered report, by claiming its number.
            rest: Sequence[ReportEvent] = events
            if events and isinstance(events[0], JobStarted):
                started = await self._start_job(tx, job_id, epoch, seq)
                if started is None:
                    raise await self._answered_before(tx, job_id, epoch, seq, "start")
                run_id, rest = started.run_id, events[1:]
            elif seq is not None:
                claimed = await tx.one(_CLAIM_REPORT, (seq, job_id, epoch, seq))
                if claimed is None:
                    raise await self._answered_before(tx, job_id, epoch, seq, "report on")
                run_id = claimed[0]
            else:
                run_id = await self._fence(tx, job_id, epoch, "report on", lock="UPDATE")
            last = None
            whole = rows.whole_steps(rest)  # each written with its end, in one statement
            starts = set(whole.values())
            for n, event in enumerate(rest):
                if isinstance(event, JobStarted):
                    if await self._start_job(tx, job_id, epoch) is None:
                        raise await self._refusal(tx, job_id, "start", epoch)
                elif isinstance(event, StepStarted):
                    if n not in starts:
                        step = (event.step_index, event.step_id, event.name, event.at)
                        await self._start_step(tx, job_id, epoch, *step, run_id=run_id)
                elif isinstance(event, LogLines):
                    last = await self._append_log(tx, job_id, epoch, event.lines)
                elif isinstance(event, StepEnded):
                    start = rest[whole[n]] if n in whole else None
                    if isinstance(start, StepStarted):
                        await self._run_step(tx, job_id, epoch, start, event, run_id)
                    else:
                        step_end = (event.step_index, event.finish, event.at)
                        await self._finish_step(tx, job_id, epoch, *step_end, run_id=run_id)
                else:
                    await self._finish_job(tx, job_id, epoch, event)
            if acquiring is None:
                return last, None
            row = await tx.one(_PICK_JOB, acquiring)
            if row is None:
                return last, None
            job = rows.job(row)
            acquired = rows.acquired_event(job)
            tx.emit(EventKind.JOB_ACQUIRED, job.run_id, job.id, acquired, acquiring["now"])
            return last, job

        return await self._transact(body)

    def _acquisition(
        self,
        runner_id: str,
        labels: Sequence[str],
        lease_ttl: float,
        tenant_id: str | None,
        request: str | None,
    ) -> dict[str, Any]:
        """The parameters of an acquisition (pick_job's and its outbox row's)."""
        now = self._clock()
        return {
            "request": rows.optional_text(request),
            "owner": rows.text(runner_id),
            "expires": now + lease_ttl,
            "tenant": tenant_id,
            "offered": rows.dump_labels(labels),
            "outbox_lock": self._outbox_lock,
            "now": now,
        }

    async def _whole_job(
        self,
        job_id: str,
        epoch: int,
        report: WholeJob,
        seq: int | None,
        acquiring: Mapping[str, Any] | None = None,
    ) -> tuple[int | None, JobRecord | None] | None:
        """Write a whole job's report in one statement (see postgres_report), with the
        acquisition `acquiring` describes; -> the number of its last log line (None without
        log lines) and the job acquired; None when nothing was written."""
        params = {
            **(acquiring or {}),
            **whole_job_params(report, job_id, epoch, seq, self._clock()),
            "outbox_lock": self._outbox_lock,
            "channel": CHANNEL,
            "notice": self._notice,
        }
        statement = WHOLE_JOB if acquiring is None else WHOLE_JOB_THEN_ACQUIRE
        try:
            row = await self._statement(statement, params)
        except StoreError as exc:
            if isinstance(exc.__cause__, errors.TriggeredActionException):
                return None  # a part was refused; the separate statements say which
            raise
        if row is None:
            return None
        flags, _, _, log_seq, *picked = row
        if flags:
            self._signals.committed(flags)
        acquired = rows.job(tuple(picked)) if picked and picked[0] is not None else None
        return (log_seq if report.logs else None), acquired

    async def _answered_before(
        self, tx: Tx, job_id: str, epoch: int, seq: int | None, action: str
    ) -> Exception:
        """rows.Replayed when report `seq` was applied already; else the refusal of the
        report's first write."""
        if seq is not None:
            reported = await tx.one(_REPORTED, (job_id,))
            if reported is not None and rows.applied_before(reported, epoch, seq):
                return rows.Replayed(int(reported[2]))
        return await self._refusal(tx, job_id, action, epoch)

    async def _start_step(
        self,
        tx: Tx,
        job_id: str,
        epoch: int,
        index: int,
        step_id: str | None,
        name: str,
        at: float | None = None,
        *,
        run_id: str | None = None,
    ) -> None:
        """`run_id` says the job is already fenced (locked under `epoch`) in `tx`."""
        now = rows.not_after(at, self._clock())
        values = (job_id, index, epoch, rows.optional_text(step_id), rows.text(name), now)
        data = rows.step_started(index)
        if run_id is None:
            run_id = await self._fence(tx, job_id, epoch, f"start step {index} of")
        if not await tx.run(_START_STEP, values):
            raise await _step_refusal(tx, job_id, index, epoch, "start")
        tx.emit(EventKind.STEP_STARTED, run_id, job_id, data, now)

    async def _run_step(
        self, tx: Tx, job_id: str, epoch: int, start: StepStarted, end: StepEnded, run_id: str
    ) -> None:
        """A step that started and ended within one report: both transitions in one write."""
        now = self._clock()
        started_at, ended_at = rows.not_after(start.at, now), rows.not_after(end.at, now)
        finish = end.finish
        values = {
            "job_id": job_id,
            "index": end.step_index,
            "epoch": epoch,
            # What the end says of the step wins, as when the two are written apart.
            "step_id": rows.optional_text(finish.step_id or start.step_id),
            "name": rows.text(finish.name or start.name),
            "status": finish.status.value,
            **rows.step_end_values(finish),
            "started": started_at,
            "ended": ended_at,
        }
        if not await tx.run(_RUN_STEP, values):
            raise await _step_refusal(tx, job_id, end.step_index, epoch, "start")
        index = end.step_index
        tx.emit(EventKind.STEP_STARTED, run_id, job_id, rows.step_started(index), started_at)
        tx.emit(EventKind.STEP_COMPLETED, run_id, job_id, rows.step_ended(index, finish), ended_at)

    async def _finish_step(
        self,
        tx: Tx,
        job_id: str,
        epoch: int,
        index: int,
        finish: StepFinish,
        at: float | None = None,
        *,
        run_id: str | None = None,
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
        if run_id is None:
            run_id = await self._fence(tx, job_id, epoch, f"finish step {index} of")
        if not await tx.run(finish.statement(_FINISH_STEP), values):
            raise await _step_refusal(tx, job_id, index, epoch, f"finish ({finish.status})")
        tx.emit(EventKind.STEP_COMPLETED, run_id, job_id, data, now)

    async def _append_log(
        self, tx: Tx, job_id: str, epoch: int, lines: Sequence[tuple[int | None, str]]
    ) -> int:
        clean = [(step_index, rows.text(text)) for step_index, text in lines]
        row = await tx.one(_RESERVE_LOG, (len(clean), job_id, epoch))
        if row is None:
            raise await self._refusal(tx, job_id, "append to the log of", epoch)
        last: int = row[0]
        first = last - len(clean) + 1
        if clean:
            await tx.conn.cursor().executemany(
                _INSERT_LOG,
                [
                    (job_id, first + n, step_index, text)
                    for n, (step_index, text) in enumerate(clean)
                ],
            )
        return last

    async def read_log(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[LogLine]:
        async def body(tx: Tx) -> list[LogLine]:
            found = await tx.all(_READ_LOG, (job_id, after_seq, max(limit, 0)))
            if not found and not await self._exists(tx, "jobs", job_id):
                raise NotFound(f"job {job_id!r} not found")
            return [rows.log_line(row) for row in found]

        return await self._read(body)


async def _step_refusal(tx: Tx, job_id: str, index: int, epoch: int, action: str) -> Conflict:
    """Why a step transition matched no row (the lease itself was checked first)."""
    row = await tx.one(
        "SELECT status, epoch FROM steps WHERE job_id = %s AND step_index = %s", (job_id, index)
    )
    status = "pending" if row is None or row[1] < epoch else row[0]
    return Conflict(f"cannot {action} step {index} of job {job_id!r}: it is {status}")

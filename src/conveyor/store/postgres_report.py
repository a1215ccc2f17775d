"""A short job's whole report as one PostgreSQL statement.

A job whose steps all start and end between two of its runner's reports
(most jobs of a few seconds or less) is reported at once: the job starts,
each step starts and ends, log lines, the job ends. Written as separate
statements in one transaction, that is six round trips or more; this writes
it as one autocommit statement with the same effects: the job goes from
acquired to its end, its run starts and concludes as those two statements
would have it, the steps and log lines are inserted, and the outbox rows
are appended in the same order, after the outbox lock as every append is
(see postgres_base).

All of it hangs on the job's conditional update: a stale lease, a job that
is not acquired or a report number applied before match no row, and nothing
is written. A step that would be refused (already started in this attempt)
makes the statement raise through `conveyor_refuse`, which undoes it whole.
Either way the caller falls back to the transaction of separate statements,
which writes what it can or says exactly why not.

A runner whose report ends a job usually wants its next one (the report
asks, see `Store.report_and_acquire`): WHOLE_JOB_THEN_ACQUIRE also leases
that job, as `acquire_job` would, in the same statement and only if the
report was written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from conveyor.engine.records import EventKind
from conveyor.engine.reports import (
    JobEnded,
    JobStarted,
    Line,
    LogLines,
    ReportEvent,
    StepEnded,
    StepStarted,
)
from conveyor.engine.states import (
    LEASED,
    JobStatus,
    RunStatus,
    StepStatus,
    allowed_from,
)
from conveyor.store import rows
from conveyor.store.postgres_base import (
    ALL_OTHERS_ENDED,
    Numbered,
    json_rows,
    json_rows_value,
    run_conclusion,
)
from conveyor.store.signal import Signals


def pick_job(condition: str) -> str:
    """The UPDATE that leases the oldest queued job the runner may run (its labels in
    %(offered)s, as JSON text; labels compare as their JSON spelling) under its call
    %(request)s, with `condition` (SQL, ours) added to the candidate's; RETURNING the
    job's columns."""
    return f"""
        UPDATE jobs SET status = 'acquired', lease_owner = %(owner)s,
            lease_epoch = lease_epoch + 1, lease_expires_at = %(expires)s, report_seq = 0,
            handed_with = %(request)s
        WHERE id = (
            SELECT candidate.id FROM jobs AS candidate
            WHERE candidate.status = 'queued'
              AND (%(tenant)s::text IS NULL OR candidate.tenant_id = %(tenant)s::text)
              AND NOT EXISTS (
                  SELECT 1 FROM json_array_elements(candidate.labels::json) AS wanted (label)
                  WHERE wanted.label::text NOT IN (
                      SELECT offered.label::text
                      FROM json_array_elements(%(offered)s::json) AS offered (label)
                  )
              ) {condition}
            ORDER BY candidate.queued_at, candidate.seq
            LIMIT 1
            FOR UPDATE SKIP LOCKED
        ) AND status IN {rows.in_list(allowed_from(JobStatus.ACQUIRED))}
        RETURNING {rows.JOB_COLUMNS}
    """


ACQUIRED_EVENT = f"""
    '{EventKind.JOB_ACQUIRED}', picked.run_id, picked.id,
    json_build_object(
        'key', picked.key, 'status', picked.status, 'conclusion', picked.conclusion,
        'runner', picked.lease_owner, 'epoch', picked.lease_epoch
    )::text
"""
"""The outbox row of the job `picked` leased: kind, run, job and data (then its time)."""

_STEP_COLUMNS = (
    ("step_index", "integer"),
    ("step_id", "text"),
    ("name", "text"),
    ("status", "text"),
    ("outcome", "text"),
    ("conclusion", "text"),
    ("outputs", "text"),
    ("started_at", "float8"),
    ("completed_at", "float8"),
)
"""The steps' rows, in `_step_values`' order."""
_LINE_COLUMNS = (("step_index", "integer"), ("text", "text"))
_EVENT_COLUMNS = (("kind", "text"), ("data", "text"), ("created_at", "float8"))

_WHOLE_JOB = f"""
    WITH job AS (
        UPDATE jobs SET status = %(status)s, conclusion = %(conclusion)s,
            outputs = %(outputs)s, reason = COALESCE(%(reason)s, reason),
            started_at = %(now)s, completed_at = %(now)s, lease_expires_at = NULL,
            report_seq = COALESCE(%(seq)s::integer, report_seq),
            log_seq = log_seq + %(line_count)s
        WHERE id = %(id)s AND lease_epoch = %(epoch)s
          AND status IN {rows.in_list(allowed_from(JobStatus.RUNNING) & LEASED)}
          AND report_seq < COALESCE(%(seq)s::integer, report_seq + 1)
        RETURNING {rows.JOB_COLUMNS}, log_seq
    ),
    stepped AS (
        INSERT INTO steps (job_id, step_index, epoch, step_id, name, status, outcome,
            conclusion, outputs, started_at, completed_at)
        SELECT job.id, s.step_index, job.lease_epoch, s.step_id, s.name, s.status, s.outcome,
            s.conclusion, s.outputs, s.started_at, s.completed_at
        FROM job, {json_rows("%(steps)s", "s", _STEP_COLUMNS)}
        ON CONFLICT (job_id, step_index) DO UPDATE SET
            epoch = excluded.epoch, step_id = excluded.step_id, name = excluded.name,
            status = excluded.status, outcome = excluded.outcome,
            conclusion = excluded.conclusion, outputs = excluded.outputs,
            started_at = excluded.started_at, completed_at = excluded.completed_at
        WHERE {rows.CURRENT_STEP_STATUS} IN {rows.in_list(allowed_from(StepStatus.RUNNING))}
        RETURNING 1
    ),
    logged AS (
        INSERT INTO log_lines (job_id, seq, step_index, text)
        SELECT job.id, job.log_seq - %(line_count)s + l.n, l.step_index, l.text
        FROM job, {json_rows("%(lines)s", "l", _LINE_COLUMNS)}
        RETURNING 1
    ),
    -- The run as it is now, waiting for whoever changes it meanwhile (another job's
    -- report), so that it starts once; and whether this job starts it, concludes it, or
    -- both: the rule of postgres_runner's _FINISH_JOB, over the other jobs as this
    -- statement's snapshot has them. Of two last jobs ending at once, each may see the
    -- other unfinished (a locking read that saw the latest would deadlock with the
    -- other report); the scheduler then concludes the run on their `job.completed`.
    current_run AS MATERIALIZED (
        SELECT workflow_runs.id, workflow_runs.status FROM workflow_runs, job
        WHERE workflow_runs.id = job.run_id
        FOR NO KEY UPDATE OF workflow_runs
    ),
    others AS (
        SELECT jobs.status, jobs.conclusion FROM jobs, job
        WHERE jobs.run_id = job.run_id AND jobs.id <> job.id
    ),
    decided AS (
        SELECT current_run.id, current_run.status = 'queued' AS starts,
            current_run.status IN {rows.in_list(allowed_from(RunStatus.COMPLETED))}
                AND {ALL_OTHERS_ENDED} AS concludes,
            {run_conclusion("job")} AS conclusion
        FROM current_run, job
    ),
    run AS (
        UPDATE workflow_runs SET
            status = CASE WHEN decided.concludes THEN 'completed' ELSE 'in_progress' END,
            started_at = CASE WHEN decided.starts THEN %(now)s ELSE workflow_runs.started_at END,
            conclusion = CASE WHEN decided.concludes THEN decided.conclusion
                ELSE workflow_runs.conclusion END,
            completed_at = CASE WHEN decided.concludes THEN %(now)s
                ELSE workflow_runs.completed_at END
        FROM decided
        WHERE workflow_runs.id = decided.id AND (decided.starts OR decided.concludes)
        RETURNING workflow_runs.id, decided.starts, decided.concludes, workflow_runs.status,
            workflow_runs.conclusion, workflow_runs.concurrency_group
    ){{picked}},
    events AS (
        SELECT 0 AS n, '{EventKind.JOB_STARTED}' AS kind, job.run_id, job.id AS job_id,
            json_build_object('key', job.key, 'status', 'running', 'conclusion', NULL)::text
                AS data,
            %(now)s::float8 AS created_at
        FROM job
        UNION ALL
        SELECT 1, '{EventKind.RUN_STARTED}', run.id, NULL, %(run_started)s, %(now)s
        FROM run WHERE run.starts
        UNION ALL
        SELECT 1 + e.n, e.kind, job.run_id, job.id, e.data, e.created_at
        FROM job, {json_rows("%(events)s", "e", _EVENT_COLUMNS)}
        UNION ALL
        SELECT %(last)s, '{EventKind.JOB_COMPLETED}', job.run_id, job.id,
            json_build_object('key', job.key, 'status', job.status,
                'conclusion', job.conclusion, 'reason', job.reason)::text,
            %(now)s
        FROM job
        UNION ALL
        SELECT %(last)s + 1, '{EventKind.RUN_COMPLETED}', run.id, NULL,
            json_build_object('status', run.status, 'conclusion', run.conclusion,
                'group', run.concurrency_group)::text,
            %(now)s
        FROM run WHERE run.concludes{{picked_event}}
    ),
    -- The outbox turn comes after every other write, so that it is never held
    -- while this statement waits for a row.
    turn AS MATERIALIZED (
        SELECT pg_advisory_xact_lock(%(outbox_lock)s) FROM job,
            (SELECT count(*) FROM stepped) AS s, (SELECT count(*) FROM logged) AS l,
            (SELECT count(*) FROM run) AS r{{picked_written}}
    ),
    appended AS (
        INSERT INTO outbox (kind, run_id, job_id, data, created_at)
        SELECT e.kind, e.run_id, e.job_id, e.data, e.created_at FROM turn, events AS e
        ORDER BY e.n
        RETURNING 1
    ),
    flags AS (
        SELECT CASE
            WHEN NOT COALESCE(run.concludes, FALSE) THEN %(flags_open)s
            WHEN run.concurrency_group IS NULL THEN %(flags_concluded)s
            ELSE %(flags_released)s END AS value
        FROM job LEFT JOIN run ON TRUE
    ),
    notified AS (
        SELECT pg_notify(%(channel)s, %(notice)s || '|' || flags.value) FROM flags
        WHERE flags.value <> '' AND (SELECT count(*) FROM appended) > 0
    )
    SELECT flags.value, (SELECT count(*) FROM notified),
        CASE WHEN (SELECT count(*) FROM stepped) < %(step_count)s
            THEN conveyor_refuse('a step of the report cannot start') END,
        job.log_seq{{picked_columns}}
    FROM job CROSS JOIN flags LEFT JOIN run ON TRUE{{picked_join}}
"""
WHOLE_JOB = Numbered.of(
    _WHOLE_JOB.format(
        picked="", picked_written="", picked_event="", picked_columns="", picked_join=""
    )
)
"""Columns: whom the commit concerns (its NOTIFY flags), the NOTIFYs sent, the refusal
check, the job's last log line number."""
WHOLE_JOB_THEN_ACQUIRE = Numbered.of(
    _WHOLE_JOB.format(
        # Only once the report is written; after it, so that the runner's next job is
        # never the one it has just ended.
        picked=f""",
    picked AS ({pick_job("AND EXISTS (SELECT 1 FROM job)")})""",
        picked_written=", (SELECT count(*) FROM picked) AS p",
        picked_event=f"""
        UNION ALL
        SELECT %(last)s + 2, {ACQUIRED_EVENT}, %(now)s FROM picked""",
        picked_columns=", picked.*",
        picked_join=" LEFT JOIN picked ON TRUE",
    )
)
"""WHOLE_JOB, then the runner's next job leased as `acquire_job` would: its columns
follow (all NULL when none was queued for the runner)."""


class WholeJob(NamedTuple):
    """A report from the job's start to its end with every step whole in between."""

    steps: list[tuple[StepStarted, StepEnded]]
    lines: list[Line]
    end: JobEnded
    logs: bool
    """Whether the report carries log lines at all (then it answers the last line's number)."""


def whole_job(events: Sequence[ReportEvent]) -> WholeJob | None:
    """The report as a WholeJob, or None when it is anything else."""
    if len(events) < 2 or not isinstance(events[0], JobStarted):
        return None
    end = events[-1]
    if not isinstance(end, JobEnded):
        return None
    middle = events[1:-1]
    whole = rows.whole_steps(middle)
    starts = set(whole.values())
    steps: list[tuple[StepStarted, StepEnded]] = []
    lines: list[Line] = []
    logs = False
    for n, event in enumerate(middle):
        if isinstance(event, LogLines):
            lines.extend(event.lines)
            logs = True
        elif n in whole:
            start = middle[whole[n]]
            assert isinstance(start, StepStarted) and isinstance(event, StepEnded)
            steps.append((start, event))
        elif n not in starts:
            return None  # a step started or ended alone, or the job started again
    indexes = [ended.step_index for _, ended in steps]
    if len(set(indexes)) != len(indexes):
        return None  # one row could not take two writes in one statement
    return WholeJob(steps, lines, end, logs)


def whole_job_params(
    report: WholeJob, job_id: str, epoch: int, seq: int | None, now: float
) -> dict[str, Any]:
    """The parameters of WHOLE_JOB but the outbox lock, channel and notice."""
    step_values = [_step_values(start, ended, now) for start, ended in report.steps]
    events: list[tuple[str, str, float]] = []
    for (_, ended), values in zip(report.steps, step_values, strict=True):
        index, started_at, ended_at = ended.step_index, values[-2], values[-1]
        events.append((EventKind.STEP_STARTED, rows.dump(rows.step_started(index)), started_at))
        data = rows.dump(rows.step_ended(index, ended.finish))
        events.append((EventKind.STEP_COMPLETED, data, ended_at))
    end = report.end
    return {
        "status": end.status.value,
        "conclusion": end.conclusion.value,
        "outputs": rows.dump(end.outputs),
        "reason": rows.optional_text(end.reason),
        "now": now,
        "seq": seq,
        "line_count": len(report.lines),
        "id": job_id,
        "epoch": epoch,
        "steps": json_rows_value(_STEP_COLUMNS, step_values),
        "step_count": len(report.steps),
        "lines": json_rows_value(
            _LINE_COLUMNS, ((index, rows.text(text)) for index, text in report.lines)
        ),
        "run_started": rows.dump({"status": RunStatus.IN_PROGRESS.value}),
        "events": json_rows_value(_EVENT_COLUMNS, events),
        "last": len(events) + 2,
        **_flags(end),
    }


def _step_values(start: StepStarted, end: StepEnded, now: float) -> tuple[Any, ...]:
    """A whole step's row, as postgres_runner's _RUN_STEP writes it."""
    finish = end.finish
    values = rows.step_end_values(finish)
    return (
        end.step_index,
        # What the end says of the step wins, as when the two are written apart.
        rows.optional_text(finish.step_id or start.step_id),
        rows.text(finish.name or start.name),
        finish.status.value,
        values["outcome"],
        values["conclusion"],
        values["outputs"],
        rows.not_after(start.at, now),
        rows.not_after(end.at, now),
    )


def _flags(end: JobEnded) -> dict[str, str]:
    """Whom the commit concerns, for each way the run can come out of it."""
    ended = (EventKind.JOB_COMPLETED.value, "run", {"status": end.status.value})

    def concluded(group: str | None) -> tuple[str, str, dict[str, Any]]:
        return (EventKind.RUN_COMPLETED.value, "run", {"group": group})

    return {
        "flags_open": Signals.flags([ended]),
        "flags_concluded": Signals.flags([ended, concluded(None)]),
        "flags_released": Signals.flags([ended, concluded("group")]),
    }

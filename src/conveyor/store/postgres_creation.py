"""A run's creation on PostgreSQL: its number, and everything else in one statement.

The number comes from the workflow's row in `run_numbers` (or the highest
number its runs have, if that is higher). The decisions a creation makes
before it writes (the concurrency group's name, which root jobs to queue)
may read it: then it is drawn first, in a statement of its own, which
commits at once. When they cannot read it (no concurrency group, and the
root jobs' decisions do not read the `github` context), the creating
statement draws it itself. Either way a creation that then writes nothing
(it loses an idempotency race, or its workflow changed) leaves a gap in the
numbers, as GitHub's may have.

The creating statement inserts the run, its jobs (in order: their `seq` is
their order in the run), the artifacts a re-run carries over, and the
outbox rows, appended after the outbox lock as every append is (see
postgres_base). It writes nothing when the tenant does not exist, the
idempotency key is taken, or the workflow is no longer as the run's creator
read it (`NewRun.workflow_version`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.store import rows
from conveyor.store.postgres_base import json_rows, json_rows_value

# Never below the highest number in use: a server from before the counters (during an
# upgrade) numbers runs from that. One index probe, given the repository's equality.
_NEXT_RUN_NUMBER = """
    INSERT INTO run_numbers (tenant_id, repository_key, workflow_path, last_number)
    SELECT %(tenant)s, %(repository_key)s, %(path)s, COALESCE(MAX(run_number), 0) + 1
    FROM workflow_runs
    WHERE tenant_id = %(tenant)s AND {repository} AND workflow_path = %(path)s
    HAVING EXISTS (SELECT 1 FROM tenants WHERE id = %(tenant)s)
    ON CONFLICT (tenant_id, repository_key, workflow_path) DO UPDATE
        SET last_number = GREATEST(run_numbers.last_number + 1, excluded.last_number)
    RETURNING last_number
"""
NEXT_RUN_NUMBER = {
    False: _NEXT_RUN_NUMBER.format(repository="repository_id = %(repository)s"),
    True: _NEXT_RUN_NUMBER.format(repository="repository_id IS NULL"),
}
"""By whether the workflow has no repository."""

_JOB_COLUMNS = (
    ("id", "text"),
    ("key", "text"),
    ("name", "text"),
    ("needs", "text"),
    ("labels", "text"),
    ("matrix", "text"),
    ("spec", "text"),
    ("status", "text"),
    ("created_at", "float8"),
    ("queued_at", "float8"),
)
_EVENT_COLUMNS = (("kind", "text"), ("job_id", "text"), ("data", "text"))

_CREATE_RUN = f"""
    WITH {{numbering}}run AS (
        INSERT INTO workflow_runs (id, tenant_id, repository_id, workflow_path, workflow_name,
            event, payload, ref, sha, inputs, status, attempt, run_number, idempotency_key,
            created_at, workflow_id, concurrency_group)
        SELECT %(id)s, %(tenant)s, %(repository)s, %(path)s, %(name)s, %(event)s,
            %(payload)s, %(ref)s, %(sha)s, %(inputs)s, 'queued', %(attempt)s, {{number}},
            %(key)s, %(now)s, %(workflow)s, %(group)s
        WHERE EXISTS (SELECT 1 FROM tenants WHERE id = %(tenant)s)
          AND (%(version)s::float8 IS NULL OR EXISTS (
              SELECT 1 FROM workflows WHERE id = %(workflow)s AND tenant_id = %(tenant)s
                AND enabled AND updated_at = %(version)s
          ))
        ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
        RETURNING {rows.RUN_COLUMNS}
    ),
    new_jobs AS (
        INSERT INTO jobs (id, run_id, tenant_id, key, name, needs, labels, matrix, spec,
            status, created_at, queued_at)
        SELECT j.id, run.id, run.tenant_id, j.key, j.name, j.needs, j.labels, j.matrix, j.spec,
            j.status, j.created_at, j.queued_at
        FROM run, {json_rows("%(jobs)s", "j", _JOB_COLUMNS)}
        ORDER BY j.n
        RETURNING {rows.JOB_COLUMNS}
    ),
    carried AS (
        INSERT INTO artifacts (id, run_id, name, path, size, created_at, job_key)
        SELECT md5(random()::text || clock_timestamp()::text || a.name), run.id, a.name,
            a.path, a.size, a.created_at, a.job_key
        FROM run, artifacts AS a
        WHERE a.run_id = %(carried_from)s
          AND a.job_key IN (SELECT json_array_elements_text(%(carried_jobs)s::json))
        RETURNING 1
    ),
    turn AS MATERIALIZED (
        SELECT pg_advisory_xact_lock(%(outbox_lock)s) FROM run,
            (SELECT count(*) FROM new_jobs) AS j, (SELECT count(*) FROM carried) AS c
    ),
    appended AS (
        INSERT INTO outbox (kind, run_id, job_id, data, created_at)
        SELECT e.kind, %(id)s, e.job_id, e.data, %(now)s
        FROM turn, {json_rows("%(events)s", "e", _EVENT_COLUMNS)}
        ORDER BY e.n
        RETURNING 1
    ),
    notified AS (
        SELECT pg_notify(%(channel)s, %(notice)s) FROM turn
        WHERE %(flags)s <> '' AND (SELECT count(*) FROM appended) > 0
    )
    SELECT run.*, new_jobs.*, (SELECT count(*) FROM notified)
    FROM run LEFT JOIN new_jobs ON TRUE
"""
CREATE_RUN = _CREATE_RUN.format(numbering="", number="%(number)s")
"""The creation of a run whose number was drawn before (or given)."""
CREATE_NUMBERED_RUN = {
    null: _CREATE_RUN.format(
        numbering=f"number AS ({NEXT_RUN_NUMBER[null]}),",
        number="(SELECT last_number FROM number)",
    )
    for null in (False, True)
}
"""The creation that draws the run's number too, by whether the workflow has no repository."""


def creation_rows(
    job_rows: Sequence[tuple[Any, ...]],
    events: Sequence[tuple[str, str | None, Any]],
    carried_jobs: Sequence[str],
) -> dict[str, str]:
    """CREATE_RUN's jobs (rows of id, then rows.new_job_rows' values), outbox rows
    (kind, job id, data) and the jobs whose artifacts a re-run carries over."""
    return {
        "jobs": json_rows_value(_JOB_COLUMNS, job_rows),
        "events": json_rows_value(
            _EVENT_COLUMNS, ((kind, job, rows.dump(data)) for kind, job, data in events)
        ),
        "carried_jobs": rows.dump(list(carried_jobs)),
    }


def new_run_row(values: dict[str, Any]) -> tuple[Any, ...]:
    """The row, in rows.RUN_COLUMNS' order, that CREATE_RUN inserts with these values."""
    return (
        values["id"],
        values["tenant"],
        values["path"],
        values["name"],
        values["event"],
        values["payload"],
        values["ref"],
        values["sha"],
        values["inputs"],
        "queued",
        None,
        values["attempt"],
        values["number"],
        values["now"],
        None,
        None,
        values["repository"],
        values["key"],
        values["workflow"],
        values["group"],
    )

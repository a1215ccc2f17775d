"""Rows to records and values to columns, shared by every SQL backend.

Both backends keep JSON in TEXT columns and select the columns in the
order given here, so one decoder serves both; the one query built from
optional filters (`run_listing`) is built here too, with the backend's
placeholder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from conveyor.engine.records import (
    ArtifactRecord,
    JobInstance,
    JobRecord,
    KeyedRequest,
    LogLine,
    NewJob,
    OutboxEvent,
    RepositoryRecord,
    RunnerRecord,
    RunRecord,
    StepRecord,
    TokenKind,
    TokenRecord,
    WorkflowRecord,
)
from conveyor.engine.reports import (
    JobEnded,
    LogLines,
    ReportEvent,
    StepEnded,
    StepFinish,
    StepStarted,
)
from conveyor.engine.states import Conclusion, JobStatus, RunStatus, StepStatus, allowed_from

RUN_COLUMNS = (
    "id, tenant_id, workflow_path, workflow_name, event, payload, ref, sha, inputs, status, "
    "conclusion, attempt, run_number, created_at, started_at, completed_at, repository_id, "
    "idempotency_key, workflow_id, concurrency_group"
)
JOB_COLUMNS = (
    "id, run_id, key, name, needs, labels, matrix, spec, status, conclusion, outputs, "
    "lease_owner, lease_epoch, lease_expires_at, retry_count, cancel_requested, reason, "
    "created_at, queued_at, started_at, completed_at, tenant_id"
)
STEP_COLUMNS = (
    "job_id, step_index, step_id, name, status, outcome, conclusion, outputs, started_at, "
    "completed_at, epoch"
)
LOG_COLUMNS = "job_id, seq, step_index, text"
EVENT_COLUMNS = "id, kind, run_id, job_id, data, created_at"
TOKEN_COLUMNS = "tenant_id, kind, runner_id"
RUNNER_COLUMNS = "id, tenant_id, name, labels, created_at, last_seen_at"
REPOSITORY_COLUMNS = "id, tenant_id, name, url, created_at"
WORKFLOW_COLUMNS = (
    "id, tenant_id, repository_id, path, name, source, enabled, created_at, updated_at"
)
ARTIFACT_COLUMNS = "run_id, name, size, path, created_at, job_key, job_id, epoch"

RUN_WIDTH = len(RUN_COLUMNS.split(","))
JOB_WIDTH = len(JOB_COLUMNS.split(","))
CURRENT_STEP_STATUS = (
    "(CASE WHEN steps.epoch < excluded.epoch THEN 'pending' ELSE steps.status END)"
)
"""In a step's upsert: the status its row has for the attempt writing now (rows of older
attempts are pending)."""

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_DIGEST = re.compile("[0-9a-f]{64}")


def new_id() -> str:
    """A fresh random id: 32 lowercase hex digits (128 random bits; `uuid` costs a
    millisecond of every `conveyor run` to import)."""
    return os.urandom(16).hex()


def is_digest(value: str) -> bool:
    """True for a SHA-256 hex digest (64 lowercase hex digits), the only form tokens are kept in."""
    return _DIGEST.fullmatch(value) is not None


def token_values(kind: str, token_hash: str, runner_id: str | None) -> TokenKind:
    """`kind` as a TokenKind once the token's fields agree with each other; else ValueError."""
    try:
        token_kind = TokenKind(kind)
    except ValueError:
        raise ValueError(f"unknown token kind {kind!r}") from None
    if not is_digest(token_hash):
        raise ValueError("a token is stored as its SHA-256 hex digest, not as given")
    if (token_kind is TokenKind.RUNNER) != (runner_id is not None):
        raise ValueError("a runner token names its runner; other tokens name none")
    return token_kind


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):  # e.g. MappingProxyType, which json does not know
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


_ENCODER = json.JSONEncoder(default=_plain)


def text(value: str) -> str:
    """`value` with what no database text column can hold (NUL, lone surrogates) as U+FFFD."""
    if value.isascii() and "\x00" not in value:
        return value
    return _UNSTORABLE.sub("\ufffd", value)


def optional_text(value: str | None) -> str | None:
    return None if value is None else text(value)


def dump(value: Any) -> str:
    """JSON text, ASCII only (so it survives any column encoding)."""
    return _ENCODER.encode(value)


def dump_optional(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(value)


def dump_labels(labels: Iterable[str]) -> str:
    return _ENCODER.encode(list(labels))


def new_job_rows(
    jobs: Sequence[NewJob], queued: Mapping[str, Sequence[JobInstance]] | None, now: float
) -> list[tuple[Any, ...]]:
    """A new run's job rows: key, name, needs, labels, matrix, spec, status, created_at
    and queued_at.

    A job `queued` names is QUEUED at once, a row per instance (as `queue_job`
    makes them); the others are PENDING.
    """
    out: list[tuple[Any, ...]] = []
    for job in jobs:
        needs = dump_labels(job.needs)
        instances = None if queued is None else queued.get(job.key)
        if instances is None:
            labels, matrix, spec = (
                dump_labels(job.labels),
                dump_optional(job.matrix),
                dump(job.spec),
            )
            out.append((job.key, text(job.name), needs, labels, matrix, spec, "pending", now, None))
            continue
        if not instances:
            raise ValueError(f"job {job.key!r} is to be queued without an instance")
        for instance in instances:
            labels = dump_labels(job.labels if instance.labels is None else instance.labels)
            matrix, spec = dump_optional(instance.matrix), dump(instance.spec)
            out.append(
                (job.key, text(instance.name), needs, labels, matrix, spec, "queued", now, now)
            )
    return out


def run_created(jobs: Sequence[NewJob], queued: Mapping[str, Any] | None) -> dict[str, Any]:
    """The data of `run.created`: how many jobs, and whether the creation queued the roots
    (the scheduler has nothing to decide for the run until one of them ends)."""
    return {"jobs": len(jobs), "scheduled": queued is not None}


def run_completed(status: str, conclusion: str, group: str | None) -> dict[str, Any]:
    """The data of `run.completed`; the group tells the scheduler whether a run may be
    waiting for this one to end."""
    return {"status": str(status), "conclusion": str(conclusion), "group": group}


def in_list(statuses: Iterable[str]) -> str:
    """`('a', 'b')` for `status IN …`; only for our own status values, never user input."""
    return "(" + ", ".join(f"'{status}'" for status in sorted(statuses)) + ")"


def _conclusion(value: str | None) -> Conclusion | None:
    return None if value is None else Conclusion(value)


def run(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        id=row[0],
        tenant_id=row[1],
        workflow_path=row[2],
        workflow_name=row[3],
        event=row[4],
        payload=json.loads(row[5]),
        ref=row[6],
        sha=row[7],
        inputs=json.loads(row[8]),
        status=RunStatus(row[9]),
        conclusion=_conclusion(row[10]),
        attempt=row[11],
        run_number=row[12],
        created_at=row[13],
        started_at=row[14],
        completed_at=row[15],
        repository_id=row[16],
        idempotency_key=row[17],
        workflow_id=row[18],
        concurrency_group=row[19],
    )


def job(row: tuple[Any, ...]) -> JobRecord:
    return JobRecord(
        id=row[0],
        run_id=row[1],
        key=row[2],
        name=row[3],
        needs=tuple(json.loads(row[4])),
        labels=tuple(json.loads(row[5])),
        matrix=None if row[6] is None else json.loads(row[6]),
        spec=json.loads(row[7]),
        status=JobStatus(row[8]),
        conclusion=_conclusion(row[9]),
        outputs=json.loads(row[10]),
        lease_owner=row[11],
        lease_epoch=row[12],
        lease_expires_at=row[13],
        retry_count=row[14],
        cancel_requested=bool(row[15]),
        reason=row[16],
        created_at=row[17],
        queued_at=row[18],
        started_at=row[19],
        completed_at=row[20],
        tenant_id=row[21],
    )


def step(row: tuple[Any, ...]) -> StepRecord:
    return StepRecord(
        job_id=row[0],
        index=row[1],
        step_id=row[2],
        name=row[3],
        status=StepStatus(row[4]),
        outcome=_conclusion(row[5]),
        conclusion=_conclusion(row[6]),
        outputs=json.loads(row[7]),
        started_at=row[8],
        completed_at=row[9],
        epoch=row[10],
    )


def log_line(row: tuple[Any, ...]) -> LogLine:
    return LogLine(job_id=row[0], seq=row[1], step_index=row[2], text=row[3])


def event(row: tuple[Any, ...]) -> OutboxEvent:
    return OutboxEvent(
        id=row[0],
        kind=row[1],
        run_id=row[2],
        job_id=row[3],
        data=json.loads(row[4]),
        created_at=row[5],
    )


def report_request(job_id: str, seq: int) -> str:
    """The request, in the sense of `Store.acquire_job`, of a numbered report that asks
    for the runner's next job: the same when the report is sent again."""
    return f"report:{job_id}:{seq}"


def carried(conclusion: Conclusion, outputs: Mapping[str, str]) -> tuple[str, str, str]:
    """`(conclusion, outputs, reason)` of a job carried over from the previous attempt."""
    if conclusion != Conclusion.SUCCESS:
        raise ValueError(f"only a successful job is carried over, not a {conclusion!r} one")
    return conclusion.value, dump(outputs), "carried over from the previous attempt"


def job_event(record: JobRecord) -> Mapping[str, Any]:
    """The data of a job's outbox event: enough for a consumer to route it."""
    conclusion = None if record.conclusion is None else record.conclusion.value
    return new_job_event(record.key, record.status.value, conclusion)


def acquired_event(record: JobRecord) -> Mapping[str, Any]:
    """The data of a job's `job.acquired` event: `job_event`'s, and whose lease it is."""
    return {**job_event(record), "runner": record.lease_owner, "epoch": record.lease_epoch}


def new_job_event(key: str, status: str, conclusion: str | None = None) -> dict[str, Any]:
    """`job_event` of a job known by its key and status."""
    return {"key": key, "status": status, "conclusion": conclusion}


def token(row: tuple[Any, ...]) -> TokenRecord:
    return TokenRecord(tenant_id=row[0], kind=TokenKind(row[1]), runner_id=row[2])


def runner(row: tuple[Any, ...]) -> RunnerRecord:
    return RunnerRecord(
        id=row[0],
        tenant_id=row[1],
        name=row[2],
        labels=tuple(json.loads(row[3])),
        created_at=row[4],
        last_seen_at=row[5],
    )


def repository(row: tuple[Any, ...]) -> RepositoryRecord:
    return RepositoryRecord(id=row[0], tenant_id=row[1], name=row[2], url=row[3], created_at=row[4])


def workflow(row: tuple[Any, ...]) -> WorkflowRecord:
    return WorkflowRecord(
        id=row[0],
        tenant_id=row[1],
        repository_id=row[2],
        path=row[3],
        name=row[4],
        source=row[5],
        enabled=bool(row[6]),
        created_at=row[7],
        updated_at=row[8],
    )


def artifact(row: tuple[Any, ...]) -> ArtifactRecord:
    return ArtifactRecord(
        run_id=row[0],
        name=row[1],
        size=row[2],
        path=row[3],
        created_at=row[4],
        job_key=row[5],
        job_id=row[6],
        epoch=row[7],
    )


def keyed_request(row: tuple[Any, ...]) -> KeyedRequest:
    """The request holding an `Idempotency-Key`: `(fingerprint, status, body)`."""
    return KeyedRequest(fingerprint=row[0], status=row[1], body=row[2])


def run_listing(
    mark: str,
    tenant_id: str,
    *,
    status: RunStatus | Collection[RunStatus] | None,
    branch: str | None,
    workflow_id: str | None,
    event: str | None,
    concurrency_group: str | None,
    after: str | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """The `list_runs` query and its parameters, with `mark` as the backend's placeholder.

    `after` must already be known to be one of the tenant's runs.
    """
    where: list[str] = [f"tenant_id = {mark}"]
    params: list[Any] = [tenant_id]
    if status is not None:
        wanted = [status] if isinstance(status, str) else list(status)
        values = sorted({RunStatus(value).value for value in wanted})
        where.append(f"status IN ({', '.join([mark] * len(values))})" if values else "FALSE")
        params.extend(values)
    for column, value in (
        ("workflow_id", workflow_id),
        ("event", event),
        ("concurrency_group", concurrency_group),
        ("ref", None if branch is None else f"refs/heads/{branch}"),
    ):
        if value is not None:
            where.append(f"{column} = {mark}")
            params.append(value)
    if after is not None:
        where.append(
            f"(created_at, id) < (SELECT created_at, id FROM workflow_runs WHERE id = {mark})"
        )
        params.append(after)
    params.append(max(limit, 0))
    sql = (
        f"SELECT {RUN_COLUMNS} FROM workflow_runs WHERE {' AND '.join(where)} "
        f"ORDER BY created_at DESC, id DESC LIMIT {mark}"
    )
    return sql, params


def not_after(at: float | None, now: float) -> float:
    """A time a runner reported, never later than `now` on the server's clock."""
    return now if at is None else min(at, now)


def job_end_statement(by_status: Mapping[JobStatus, str], end: JobEnded) -> str:
    """The backend's statement that ends a job so; ValueError for a status no job ends in."""
    statement = by_status.get(end.status)
    if statement is None:
        raise ValueError(f"a job cannot end as {end.status!r}")
    return statement


class Replayed(Exception):
    """A numbered report applied before: answered with its last log seq, not applied again
    (and it takes no job: the one its first answer carried is the runner's already)."""

    def __init__(self, last_seq: int) -> None:
        super().__init__(last_seq)
        self.last_seq = last_seq


def applied_before(reported: tuple[Any, ...], epoch: int, seq: int) -> bool:
    """Whether report `seq` of lease `epoch` was applied already, by the job's
    (lease_epoch, report_seq, log_seq): it is then answered, not applied again."""
    return bool(reported[0] == epoch and reported[1] >= seq)


def step_end_values(finish: StepFinish) -> dict[str, Any]:
    """The columns a step's end writes: outcome, conclusion and outputs."""
    return {
        "outcome": None if finish.outcome is None else finish.outcome.value,
        "conclusion": None if finish.conclusion is None else finish.conclusion.value,
        "outputs": dump(finish.outputs),
    }


def step_started(index: int) -> dict[str, Any]:
    """The data of `step.started`."""
    return {"index": index, "status": StepStatus.RUNNING.value}


def step_ended(index: int, finish: StepFinish) -> dict[str, Any]:
    """The data of `step.completed`."""
    conclusion = None if finish.conclusion is None else finish.conclusion.value
    return {"index": index, "status": finish.status.value, "conclusion": conclusion}


def whole_steps(events: Sequence[ReportEvent]) -> dict[int, int]:
    """The steps a report starts and ends, with only log lines between (a short step's
    usual report), which a backend may write at once: the end's position -> the start's."""
    whole: dict[int, int] = {}
    started: tuple[int, StepStarted] | None = None
    for n, event in enumerate(events):
        if isinstance(event, StepStarted):
            started = (n, event)
            continue
        if isinstance(event, LogLines):
            continue
        if isinstance(event, StepEnded) and started is not None:
            position, start = started
            ends_running = StepStatus.RUNNING in allowed_from(event.finish.status)
            if start.step_index == event.step_index and ends_running:
                whole[n] = position
        started = None
    return whole


def check_report(
    events: Sequence[ReportEvent],
    step_ends: Mapping[StepStatus, str],
    job_ends: Mapping[JobStatus, str],
) -> None:
    """Refuse a report asking for an end no step or job has, or saying anything after the
    job's end, before anything is written."""
    ended = [n for n, event in enumerate(events) if isinstance(event, JobEnded)]
    if ended and ended[0] != len(events) - 1:
        raise ValueError("a report says nothing after the job's end")
    for event in events:
        if isinstance(event, StepEnded):
            event.finish.statement(step_ends)
        elif isinstance(event, JobEnded):
            job_end_statement(job_ends, event)

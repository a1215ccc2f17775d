"""What the store takes in and hands back: runs, jobs, steps, logs, events and service objects.

Records are frozen snapshots of a row at the moment it was read; the store
is the only thing that changes state. Timestamps are seconds since the epoch
(floats, from the store's injected clock). Mapping fields hold JSON-able data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from conveyor.engine.states import Conclusion, JobStatus, RunStatus, StepStatus
from conveyor.workflow.model import EMPTY


class EventKind(StrEnum):
    """The `kind` of each outbox event (plain strings on the wire)."""

    RUN_CREATED = "run.created"
    RUN_STARTED = "run.started"
    RUN_COMPLETED = "run.completed"
    JOB_QUEUED = "job.queued"
    JOB_ACQUIRED = "job.acquired"
    JOB_STARTED = "job.started"
    JOB_REQUEUED = "job.requeued"
    JOB_CANCEL_REQUESTED = "job.cancel_requested"
    JOB_COMPLETED = "job.completed"
    STEP_STARTED = "step.started"
    STEP_COMPLETED = "step.completed"


_ADVANCING = frozenset({EventKind.RUN_CREATED, EventKind.JOB_REQUEUED, EventKind.JOB_COMPLETED})


class SchedulerWork(NamedTuple):
    """What some committed events leave the scheduler to do."""

    advance: list[str]
    """Runs with decisions due: created, or a job of theirs ended or went back to the queue."""
    release: list[str]
    """Runs that ended holding a concurrency group, which a newer run may be waiting for."""


def scheduler_work(events: Iterable[tuple[str, str, Mapping[str, Any]]]) -> SchedulerWork:
    """What events, as (kind, run id, data), leave the scheduler to do.

    Nothing for a run that ended among them (a job's end that concluded its run
    comes with `run.completed`), nor for a run whose creation queued its root
    jobs (`"scheduled": true`), until one of those ends. A commit that leaves
    nothing to do does not wake the scheduler; its events wait for the next batch.
    """
    events = list(events)
    ended = {run_id: data for kind, run_id, data in events if kind == EventKind.RUN_COMPLETED}
    advance = dict.fromkeys(
        run_id
        for kind, run_id, data in events
        if kind in _ADVANCING
        and run_id not in ended
        and not (kind == EventKind.RUN_CREATED and data.get("scheduled") is True)
    )
    # Events written before `group` was part of them do not say: look.
    release = [run_id for run_id, data in ended.items() if data.get("group", "") is not None]
    return SchedulerWork(list(advance), release)


QUEUEING = frozenset({EventKind.JOB_QUEUED, EventKind.JOB_REQUEUED})
"""The events that may make a job available: a commit with one of them wakes polling runners."""


class TokenKind(StrEnum):
    """What an API token lets its bearer do (the store keeps only its SHA-256 hash)."""

    ADMIN = "admin"
    REGISTRATION = "registration"
    RUNNER = "runner"


@dataclass(frozen=True)
class NewRun:
    """A run to create; `idempotency_key` (per tenant) makes creation happen once."""

    workflow_path: str
    workflow_name: str
    event: str
    payload: Mapping[str, Any]
    ref: str | None
    sha: str | None
    inputs: Mapping[str, Any]
    tenant_id: str = "default"
    repository_id: str | None = None
    attempt: int = 1
    run_number: int | None = None
    idempotency_key: str | None = None
    workflow_id: str | None = None
    workflow_version: float | None = None
    """With `workflow_id`: the run is created only while that workflow is enabled and still
    as last updated at this time (its `updated_at`), else StaleWorkflow."""
    concurrency_group: str | None = None
    carried_from: str | None = None
    """The run whose failed jobs this one re-runs: the artifacts that its `carried_jobs`
    uploaded there belong to this run too."""
    carried_jobs: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewJob:
    """A job to create with its run (status PENDING); `spec` is what the runner needs."""

    key: str
    name: str
    needs: tuple[str, ...]
    labels: tuple[str, ...]
    matrix: Mapping[str, Any] | None = None
    spec: Mapping[str, Any] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True)
class JobInstance:
    """One concrete instance of a PENDING job, given to `Store.queue_job`.

    `labels` replaces the job's labels when set (`runs-on: ${{ matrix.os }}`).
    """

    name: str
    matrix: Mapping[str, Any] | None
    spec: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    labels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RunRecord:
    id: str
    tenant_id: str
    workflow_path: str
    workflow_name: str
    event: str
    payload: Mapping[str, Any]
    ref: str | None
    sha: str | None
    inputs: Mapping[str, Any]
    status: RunStatus
    conclusion: Conclusion | None
    attempt: int
    run_number: int
    created_at: float
    started_at: float | None
    completed_at: float | None
    repository_id: str | None = None
    idempotency_key: str | None = None
    workflow_id: str | None = None
    concurrency_group: str | None = None


@dataclass(frozen=True)
class JobRecord:
    """A job row; `lease_epoch` is the fencing token every runner write must carry."""

    id: str
    run_id: str
    key: str
    name: str
    needs: tuple[str, ...]
    labels: tuple[str, ...]
    matrix: Mapping[str, Any] | None
    spec: Mapping[str, Any]
    status: JobStatus
    conclusion: Conclusion | None
    outputs: Mapping[str, str]
    lease_owner: str | None
    lease_epoch: int
    lease_expires_at: float | None
    retry_count: int
    cancel_requested: bool
    reason: str | None
    created_at: float
    queued_at: float | None
    started_at: float | None
    completed_at: float | None
    tenant_id: str = "default"


@dataclass(frozen=True)
class StepRecord:
    """A step row; `epoch` is the lease epoch of the attempt that wrote it."""

    job_id: str
    index: int
    step_id: str | None
    name: str
    status: StepStatus
    outcome: Conclusion | None
    conclusion: Conclusion | None
    outputs: Mapping[str, str]
    started_at: float | None
    completed_at: float | None
    epoch: int = 0


@dataclass(frozen=True)
class LogLine:
    """One line of a job's log; `seq` increases by one per line, per job, from 1."""

    job_id: str
    seq: int
    step_index: int | None
    text: str


@dataclass(frozen=True)
class OutboxEvent:
    """A committed state change, in commit order (`id` increases)."""

    id: int
    kind: str
    run_id: str
    job_id: str | None
    data: Mapping[str, Any]
    created_at: float


@dataclass(frozen=True)
class TokenRecord:
    """Whom a token hash belongs to; `runner_id` is set for runner tokens only."""

    tenant_id: str
    kind: TokenKind
    runner_id: str | None


@dataclass(frozen=True)
class RunnerRecord:
    """A registered runner; `last_seen_at` moves on every poll (`Store.touch_runner`)."""

    id: str
    tenant_id: str
    name: str
    labels: tuple[str, ...]
    created_at: float
    last_seen_at: float | None


@dataclass(frozen=True)
class RepositoryRecord:
    """A git repository workflows are read from; `url` is a path or URL git can fetch."""

    id: str
    tenant_id: str
    name: str
    url: str
    created_at: float


@dataclass(frozen=True)
class WorkflowRecord:
    """A registered workflow file: its YAML `source` as registered, and whether it triggers."""

    id: str
    tenant_id: str
    repository_id: str | None
    path: str
    name: str
    source: str
    enabled: bool
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ArtifactRecord:
    """A file set uploaded by a run's job; `path` is where the server keeps its bytes."""

    run_id: str
    name: str
    size: int
    path: str
    created_at: float
    job_key: str | None = None
    """The key of the job that uploaded it (None for artifacts older than that record)."""
    job_id: str | None = None
    """The job that uploaded it (None for artifacts older than that record, or carried over)."""
    epoch: int | None = None
    """The lease epoch it was uploaded under; a retry of `job_id` with a later one replaces it."""


@dataclass(frozen=True)
class KeyedRequest:
    """The request a tenant's `Idempotency-Key` is bound to, as `Store.reserve_response`
    found it.

    `reservation` is set when the caller has just reserved the key and must
    act; otherwise another request holds it: `status` and `body` are its
    stored answer, or None while it is still in flight.
    """

    fingerprint: str
    reservation: str | None = None
    status: int | None = None
    body: str | None = None

"""The JSON the API takes and gives: pydantic models, and records turned into them.

Request models reject what the handlers cannot use (wrong types, missing
fields) before any handler runs; FastAPI answers those with 422 `invalid`.
Response models are what the OpenAPI document shows; they never carry
secrets or a job's internal spec.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from conveyor.engine.records import (
    ArtifactRecord,
    JobRecord,
    LogLine,
    RepositoryRecord,
    RunRecord,
    StepRecord,
    WorkflowRecord,
)

Outcome = Literal["success", "failure", "cancelled", "skipped"]


class ErrorOut(BaseModel):
    code: str
    message: str


# -- runner protocol ----------------------------------------------------------------


class RegisterIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    labels: list[str] = Field(default_factory=list, max_length=100)


class RegisterOut(BaseModel):
    runner_id: str
    token: str


class PollIn(BaseModel):
    wait: float = Field(default=0.0, ge=0.0)
    request: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """The runner's name for this poll, the same when it asks again after a lost answer
    and never again once answered: a job the poll leases remembers it."""
    again: bool = False
    """The runner asked with this `request` before and its answer was lost: a job that
    poll leased and the runner never started is handed again, not another."""


class PollOut(BaseModel):
    job: dict[str, Any] | None


class EpochIn(BaseModel):
    epoch: int = Field(ge=0)


class HeartbeatIn(EpochIn):
    wait: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="hold the answer up to this many seconds (at most the server's heartbeat"
        " interval) unless the job's cancel is asked for meanwhile",
    )


class HeartbeatOut(BaseModel):
    cancel_requested: bool
    lease_ttl: float


class StepStartIn(EpochIn):
    step_id: str | None = None
    name: str = ""


class StepFinishIn(EpochIn):
    step_id: str | None = None
    name: str = ""
    outcome: Outcome
    conclusion: Outcome
    outputs: dict[str, str] = Field(default_factory=dict)
    restored: bool = False
    """Not run: a run-once step's recorded completion restored (recorded as skipped)."""


class LogsIn(EpochIn):
    lines: list[tuple[int | None, str]]


class LogsOut(BaseModel):
    last_seq: int


class CompleteIn(EpochIn):
    conclusion: Literal["success", "failure", "cancelled"]
    outputs: dict[str, str] = Field(default_factory=dict)
    reason: str | None = None


class JobStartEvent(BaseModel):
    type: Literal["job_start"]


class StepStartEvent(BaseModel):
    type: Literal["step_start"]
    index: int = Field(ge=0, le=100_000)
    step_id: str | None = None
    name: str = ""
    at: float | None = Field(default=None, allow_inf_nan=False)


class LogsEvent(BaseModel):
    type: Literal["logs"]
    lines: list[tuple[int | None, str]]


class StepEndEvent(BaseModel):
    type: Literal["step_end"]
    index: int = Field(ge=0, le=100_000)
    step_id: str | None = None
    name: str = ""
    outcome: Outcome
    conclusion: Outcome
    outputs: dict[str, str] = Field(default_factory=dict)
    at: float | None = Field(default=None, allow_inf_nan=False)
    restored: bool = False
    """As `StepFinishIn.restored`."""


class JobEndEvent(BaseModel):
    type: Literal["job_end"]
    conclusion: Literal["success", "failure", "cancelled"]
    outputs: dict[str, str] = Field(default_factory=dict)
    reason: str | None = None


ReportEventIn = Annotated[
    JobStartEvent | StepStartEvent | LogsEvent | StepEndEvent | JobEndEvent,
    Field(discriminator="type"),
]


class ReportIn(EpochIn):
    """What happened to a job since the last report, in order; applied all or nothing."""

    events: list[ReportEventIn] = Field(min_length=1, max_length=10_000)
    seq: int | None = Field(default=None, ge=1, le=2**31 - 1)
    """The report's number within the lease (1, 2, …): a report sent again is applied once."""
    next: bool = False
    """With the job's end: hand the runner its next job in the answer, as a poll would."""

    @model_validator(mode="after")
    def _ends_last(self) -> ReportIn:
        ends = [n for n, event in enumerate(self.events) if event.type == "job_end"]
        if ends and ends[0] != len(self.events) - 1:
            raise ValueError("nothing may follow the job_end event")
        if self.next and not ends:
            raise ValueError("only a report that ends the job may ask for the next one")
        return self


class ReportOut(BaseModel):
    last_seq: int | None
    """The seq of the last log line the report carried, if it carried any."""
    job: dict[str, Any] | None = None
    """The runner's next job, when the report asked for it and one was queued."""


class ArtifactOut(BaseModel):
    name: str
    size: int


class ArtifactsOut(BaseModel):
    """The runner's list: every artifact of the run, on one page (runners do not page)."""

    artifacts: list[ArtifactOut]


def artifact_out(record: ArtifactRecord) -> ArtifactOut:
    return ArtifactOut(name=record.name, size=record.size)


# -- repositories and workflows -------------------------------------------------------


class RepositoryIn(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", max_length=200)
    url: str = Field(min_length=1, max_length=4096)


class RepositoryOut(BaseModel):
    id: str
    name: str
    url: str
    created_at: float


class RepositoriesOut(BaseModel):
    items: list[RepositoryOut]
    next_cursor: str | None


def repository_out(record: RepositoryRecord) -> RepositoryOut:
    return RepositoryOut(
        id=record.id, name=record.name, url=record.url, created_at=record.created_at
    )


class WorkflowIn(BaseModel):
    repository_id: str | None = None
    path: str = Field(min_length=1, max_length=1024)
    source: str | None = Field(default=None, max_length=1 << 20)


class WorkflowOut(BaseModel):
    id: str
    repository_id: str | None
    path: str
    name: str
    enabled: bool
    created_at: float


class WorkflowDetailOut(WorkflowOut):
    source: str


class WorkflowsOut(BaseModel):
    items: list[WorkflowOut]
    next_cursor: str | None


class EnabledIn(BaseModel):
    enabled: bool


class DispatchIn(BaseModel):
    ref: str | None = Field(default=None, max_length=1024)
    inputs: dict[str, Any] = Field(default_factory=dict)


class RunIdOut(BaseModel):
    run_id: str


class RunsTriggeredOut(BaseModel):
    runs: list[str]


def workflow_out(record: WorkflowRecord) -> WorkflowOut:
    return WorkflowOut(
        id=record.id,
        repository_id=record.repository_id,
        path=record.path,
        name=record.name,
        enabled=record.enabled,
        created_at=record.created_at,
    )


def workflow_detail_out(record: WorkflowRecord) -> WorkflowDetailOut:
    return WorkflowDetailOut(**workflow_out(record).model_dump(), source=record.source)


# -- runs, jobs, steps, logs ----------------------------------------------------------


class RunOut(BaseModel):
    id: str
    workflow_id: str | None
    repository_id: str | None
    workflow_path: str
    workflow_name: str
    event: str
    ref: str | None
    sha: str | None
    inputs: dict[str, Any]
    status: str
    conclusion: str | None
    attempt: int
    run_number: int
    concurrency_group: str | None
    created_at: float
    started_at: float | None
    completed_at: float | None


class RunsOut(BaseModel):
    items: list[RunOut]
    next_cursor: str | None


def run_out(record: RunRecord) -> RunOut:
    return RunOut(
        id=record.id,
        workflow_id=record.workflow_id,
        repository_id=record.repository_id,
        workflow_path=record.workflow_path,
        workflow_name=record.workflow_name,
        event=record.event,
        ref=record.ref,
        sha=record.sha,
        inputs=dict(record.inputs),
        status=record.status.value,
        conclusion=record.conclusion.value if record.conclusion else None,
        attempt=record.attempt,
        run_number=record.run_number,
        concurrency_group=record.concurrency_group,
        created_at=record.created_at,
        started_at=record.started_at,
        completed_at=record.completed_at,
    )


class StepOut(BaseModel):
    index: int
    step_id: str | None
    name: str
    status: str
    outcome: str | None
    conclusion: str | None
    outputs: dict[str, str]
    started_at: float | None
    completed_at: float | None


def step_out(record: StepRecord) -> StepOut:
    return StepOut(
        index=record.index,
        step_id=record.step_id,
        name=record.name,
        status=record.status.value,
        outcome=record.outcome.value if record.outcome else None,
        conclusion=record.conclusion.value if record.conclusion else None,
        outputs=dict(record.outputs),
        started_at=record.started_at,
        completed_at=record.completed_at,
    )


class JobOut(BaseModel):
    id: str
    run_id: str
    key: str
    name: str
    needs: list[str]
    labels: list[str]
    matrix: dict[str, Any] | None
    status: str
    conclusion: str | None
    outputs: dict[str, str]
    runner_id: str | None
    retry_count: int
    cancel_requested: bool
    reason: str | None
    created_at: float
    queued_at: float | None
    started_at: float | None
    completed_at: float | None


class JobDetailOut(JobOut):
    steps: list[StepOut]


class JobsOut(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


def job_out(record: JobRecord) -> JobOut:
    return JobOut(
        id=record.id,
        run_id=record.run_id,
        key=record.key,
        name=record.name,
        needs=list(record.needs),
        labels=list(record.labels),
        matrix=dict(record.matrix) if record.matrix is not None else None,
        status=record.status.value,
        conclusion=record.conclusion.value if record.conclusion else None,
        outputs=dict(record.outputs),
        runner_id=record.lease_owner,
        retry_count=record.retry_count,
        cancel_requested=record.cancel_requested,
        reason=record.reason,
        created_at=record.created_at,
        queued_at=record.queued_at,
        started_at=record.started_at,
        completed_at=record.completed_at,
    )


def job_detail_out(record: JobRecord, steps: list[StepRecord]) -> JobDetailOut:
    return JobDetailOut(**job_out(record).model_dump(), steps=[step_out(s) for s in steps])


class LogLineOut(BaseModel):
    seq: int
    step: int | None
    text: str


class LogPageOut(BaseModel):
    lines: list[LogLineOut]
    next: int | None


def log_line_out(line: LogLine) -> LogLineOut:
    return LogLineOut(seq=line.seq, step=line.step_index, text=line.text)


class ArtifactsPageOut(BaseModel):
    items: list[ArtifactOut]
    next_cursor: str | None

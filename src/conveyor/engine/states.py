"""The run, job and step state machines: statuses and the one transition table.

    Run:   QUEUED → IN_PROGRESS → COMPLETED;  QUEUED → COMPLETED (nothing ever ran)
    Job:   PENDING → QUEUED → ACQUIRED → RUNNING → COMPLETED | FAILED | CANCELLED
           PENDING → SKIPPED | CANCELLED | FAILED (its `if:` or matrix cannot be evaluated)
           PENDING → COMPLETED              carried over: it succeeded in the previous
                                            attempt of a re-run of failed jobs
           QUEUED → CANCELLED;  ACQUIRED → FAILED | CANCELLED
           ACQUIRED | RUNNING → QUEUED      only by the reaper (lease expired, retries left)
    Step:  PENDING → RUNNING → COMPLETED | FAILED
           PENDING → SKIPPED | FAILED       (never started: `if:` false, or it failed to start)

Every store transition is a compare-and-set whose `WHERE status IN (…)` is
`allowed_from(target)`, narrowed where one caller owns only part of it (a
runner writes only while the job is `LEASED`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeVar


class RunStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class JobStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    ACQUIRED = "acquired"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Conclusion(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


_S = TypeVar("_S", RunStatus, JobStatus, StepStatus)


def _table(edges: dict[_S, set[_S]]) -> Mapping[_S, frozenset[_S]]:
    return MappingProxyType({source: frozenset(targets) for source, targets in edges.items()})


RUN_TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = _table(
    {
        RunStatus.QUEUED: {RunStatus.IN_PROGRESS, RunStatus.COMPLETED},
        RunStatus.IN_PROGRESS: {RunStatus.COMPLETED},
        RunStatus.COMPLETED: set(),
    }
)

JOB_TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = _table(
    {
        # → COMPLETED from PENDING: a re-run of failed jobs carries a job that succeeded
        # in the previous attempt over, with its outputs, without running it again.
        JobStatus.PENDING: {
            JobStatus.COMPLETED,
            JobStatus.QUEUED,
            JobStatus.SKIPPED,
            JobStatus.CANCELLED,
            JobStatus.FAILED,
        },
        JobStatus.QUEUED: {JobStatus.ACQUIRED, JobStatus.CANCELLED},
        # → QUEUED from a leased status is the reaper's alone (lease expired, retries left).
        JobStatus.ACQUIRED: {
            JobStatus.RUNNING,
            JobStatus.QUEUED,
            JobStatus.CANCELLED,
            JobStatus.FAILED,
        },
        JobStatus.RUNNING: {
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
            JobStatus.QUEUED,
        },
        JobStatus.COMPLETED: set(),
        JobStatus.FAILED: set(),
        JobStatus.CANCELLED: set(),
        JobStatus.SKIPPED: set(),
    }
)

STEP_TRANSITIONS: Mapping[StepStatus, frozenset[StepStatus]] = _table(
    {
        StepStatus.PENDING: {StepStatus.RUNNING, StepStatus.SKIPPED, StepStatus.FAILED},
        StepStatus.RUNNING: {StepStatus.COMPLETED, StepStatus.FAILED},
        StepStatus.COMPLETED: set(),
        StepStatus.FAILED: set(),
        StepStatus.SKIPPED: set(),
    }
)

LEASED: frozenset[JobStatus] = frozenset({JobStatus.ACQUIRED, JobStatus.RUNNING})
"""Job statuses in which a runner holds the lease; every runner write requires one."""


_TABLES: Mapping[type, Mapping[Any, frozenset[Any]]] = MappingProxyType(
    {RunStatus: RUN_TRANSITIONS, JobStatus: JOB_TRANSITIONS, StepStatus: STEP_TRANSITIONS}
)


def allowed_from(target: _S) -> frozenset[_S]:
    """Every status from which `target` may be reached: the `WHERE status IN (…)` set."""
    table: Mapping[_S, frozenset[_S]] = _TABLES[type(target)]
    return frozenset(source for source, targets in table.items() if target in targets)


def is_terminal(status: RunStatus | JobStatus | StepStatus) -> bool:
    """True when no transition leaves `status`."""
    return not _TABLES[type(status)][status]

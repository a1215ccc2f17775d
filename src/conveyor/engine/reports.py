"""What a runner reports about a job under its lease, as `Store.apply_report` takes it.

A report is an ordered batch of these events, applied in one transaction:
either all of them take effect, with their outbox events, or none does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from conveyor.engine.states import Conclusion, JobStatus, StepStatus

Line = tuple[int | None, str]
"""A log line: the index of the step that printed it (None: the runner's own), its text."""


class StepFinish(NamedTuple):
    """How a step ended."""

    status: StepStatus
    outcome: Conclusion | None
    conclusion: Conclusion | None
    outputs: Mapping[str, str]
    step_id: str | None = None
    name: str = ""

    def statement(self, by_status: Mapping[StepStatus, str]) -> str:
        """The backend's statement that sets this status; ValueError for one no step ends in."""
        statement = by_status.get(self.status)
        if statement is None:
            raise ValueError(f"a step cannot end as {self.status!r}")
        return statement


class JobStarted(NamedTuple):
    """The runner began the job (ASSIGNED → RUNNING)."""


class StepStarted(NamedTuple):
    step_index: int
    step_id: str | None
    name: str
    at: float | None = None
    """When the step started on the runner (epoch seconds); never later than its arrival."""


class LogLines(NamedTuple):
    lines: Sequence[Line]


class StepEnded(NamedTuple):
    step_index: int
    finish: StepFinish
    at: float | None = None


class JobEnded(NamedTuple):
    """The job's end: its status, conclusion and outputs (the lease ends with it)."""

    status: JobStatus
    conclusion: Conclusion
    outputs: Mapping[str, str]
    reason: str | None = None


ReportEvent = JobStarted | StepStarted | LogLines | StepEnded | JobEnded

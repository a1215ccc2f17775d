"""What a runner is handed for one job, and what it hands back."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.workflow.model import Job, Workflow


@dataclass(frozen=True)
class CompletedStep:
    """A run-once step's completion that an earlier lease of the run attempt recorded."""

    epoch: int
    """The fencing token of the lease that recorded it."""
    outputs: Mapping[str, str]


@dataclass(frozen=True)
class JobAssignment:
    """One acquired job: its definition, its contexts and its lease."""

    job_id: str
    epoch: int
    key: str
    name: str
    workflow: Workflow
    job: Job
    source_dir: str | None
    """Where the repository lives: a job workspace starts as a copy of it (None: empty)."""
    matrix: Mapping[str, Any] | None = None
    contexts: Mapping[str, Any] = field(default_factory=dict)
    """github, inputs, vars, needs, strategy: everything but env, steps, job and runner."""
    secrets: Mapping[str, str] = field(default_factory=dict)
    idempotency_base: str = ""
    """Stable across automatic retries of one run attempt; each step appends its index."""
    bind: bool = False
    """Run in `source_dir` itself instead of a copy of it."""
    checkout: Mapping[str, str] | None = None
    """{url, sha, ref}: the commit `actions/checkout` fetches into an empty workspace."""
    completed_steps: Mapping[int, CompletedStep] = field(default_factory=dict)
    """By step index: the run-once steps not to run again (an automatic retry's)."""


@dataclass(frozen=True)
class StepReport:
    """How one top-level step ended."""

    index: int
    step_id: str | None
    name: str
    outcome: str  # success | failure | cancelled | skipped
    conclusion: str
    outputs: Mapping[str, str]
    restored: bool = False
    """Not run: a recorded completion restored (run-once); recorded as skipped."""


@dataclass(frozen=True)
class JobOutcome:
    """How the job ended."""

    conclusion: str  # success | failure | cancelled
    outputs: Mapping[str, str]
    reason: str | None = None
    summary: str = ""
    """What the steps wrote to GITHUB_STEP_SUMMARY (masked), in step order."""


class JobReporter(Protocol):
    """Where an executor reports to: the in-process engine or the HTTP channel."""

    cancel: asyncio.Event
    """Set when the job must be cancelled (user cancel, lost lease, Ctrl-C)."""

    async def step_started(self, index: int, step_id: str | None, name: str) -> None: ...

    async def step_finished(self, report: StepReport) -> None: ...

    def log(self, step_index: int | None, line: str) -> None:
        """One output line, already masked; buffered and sent in batches."""

    async def flush(self) -> None: ...

"""The step ledger on a retry: which recorded completions a job's run-once steps keep.

A job retried automatically (its lease ran out) starts again from its first
step in a fresh workspace (DESIGN.md, guarantee 5). Its step rows still hold
what earlier leases of the same run attempt recorded, each with the epoch of
the lease that wrote it. A step the workflow marks `run-once` whose row says
it succeeded is not run again: the runner is handed the row and restores its
outputs. A user's re-run is a new attempt with new job rows, so it finds none.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from conveyor.engine.records import JobRecord, StepRecord
from conveyor.engine.states import Conclusion, StepStatus
from conveyor.engine.store import Store
from conveyor.workflow.model import Job

_ENDED = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED})
"""Run and succeeded, or restored (skipped with its recorded success) by an earlier retry."""


def has_run_once(job: Job) -> bool:
    return any(step.run_once for step in job.steps)


def run_once_completions(job: Job, rows: Iterable[StepRecord], epoch: int) -> list[StepRecord]:
    """The rows of `job`'s run-once steps that leases before `epoch` recorded as succeeded.

    A step skipped by its `if:` has outcome `skipped`, one that failed `failure`
    (even under continue-on-error): neither counts.
    """
    run_once = {step.index for step in job.steps if step.run_once}
    return [
        row
        for row in rows
        if row.index in run_once
        and row.epoch < epoch
        and row.status in _ENDED
        and row.outcome == Conclusion.SUCCESS
    ]


async def completed_steps(store: Store, job: JobRecord, spec: Job) -> list[dict[str, Any]]:
    """The assignment's `completed_steps` for the lease just granted on `job`.

    Read after the lease was granted and before its runner has the answer, so
    before that runner can write a step row; earlier leases are fenced out.
    """
    if job.retry_count == 0 or not has_run_once(spec):
        return []  # a first lease: nothing recorded yet, and no read for it
    rows = await store.list_steps(job.id)
    return [
        {"index": row.index, "epoch": row.epoch, "outputs": dict(row.outputs)}
        for row in run_once_completions(spec, rows, job.lease_epoch)
    ]

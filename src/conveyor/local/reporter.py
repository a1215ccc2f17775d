"""The in-process `JobReporter`: step states and log batches go straight to the store."""

from __future__ import annotations

import asyncio

from conveyor.engine.records import JobRecord
from conveyor.engine.states import Conclusion, StepStatus
from conveyor.engine.store import Store
from conveyor.local.console import JobPrinter
from conveyor.runner.assignment import StepReport

BATCH_LINES = 100

_STEP_STATUS = {
    "success": StepStatus.COMPLETED,
    "failure": StepStatus.FAILED,
    "cancelled": StepStatus.FAILED,
    "skipped": StepStatus.SKIPPED,
}


class StoreReporter:
    """Reports one job's progress under its lease epoch; prints lines as they come."""

    def __init__(self, store: Store, job: JobRecord, printer: JobPrinter) -> None:
        self.cancel = asyncio.Event()
        self._store = store
        self._job = job
        self._print = printer
        self._buffer: list[tuple[int | None, str]] = []

    async def step_started(self, index: int, step_id: str | None, name: str) -> None:
        await self._store.start_step(self._job.id, self._job.lease_epoch, index, step_id, name)

    async def step_finished(self, report: StepReport) -> None:
        await self.flush()
        await self._store.finish_step(
            self._job.id,
            self._job.lease_epoch,
            report.index,
            _STEP_STATUS[report.outcome if report.conclusion != "skipped" else "skipped"],
            Conclusion(report.outcome),
            Conclusion(report.conclusion),
            dict(report.outputs),
            step_id=report.step_id,
            name=report.name,
        )
        self._print.step(report)

    def log(self, step_index: int | None, line: str) -> None:
        self._buffer.append((step_index, line))
        self._print.line(step_index, line)

    async def flush(self) -> None:
        if self._buffer:
            batch, self._buffer = self._buffer, []
            await self._store.append_log(self._job.id, self._job.lease_epoch, batch)

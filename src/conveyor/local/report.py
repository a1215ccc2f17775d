"""report.json: the run as the conformance contract describes it, read from the store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.engine.records import JobRecord, RunRecord
from conveyor.engine.runplan import PlannedJob
from conveyor.engine.store import Store


async def build_report(
    store: Store, run: RunRecord, rows: Sequence[JobRecord], planned: Mapping[str, PlannedJob]
) -> dict[str, Any]:
    jobs = []
    order = {key: i for i, key in enumerate(planned)}
    for row in sorted(rows, key=lambda r: order.get(r.key, len(order))):
        steps = []
        logs: dict[int, list[str]] = {}
        after = 0
        while True:
            batch = await store.read_log(row.id, after_seq=after, limit=10_000)
            if not batch:
                break
            for line in batch:
                if line.step_index is not None:
                    logs.setdefault(line.step_index, []).append(line.text)
            after = batch[-1].seq
        for step in await store.list_steps(row.id):
            steps.append(
                {
                    "id": step.step_id,
                    "name": step.name,
                    "outcome": str(step.outcome) if step.outcome else None,
                    "conclusion": str(step.conclusion) if step.conclusion else None,
                    "outputs": dict(step.outputs),
                    "log": logs.get(step.index, []),
                }
            )
        plan = planned.get(row.key)
        jobs.append(
            {
                "id": plan.report_id if plan else row.key,
                "name": row.name,
                "matrix": dict(row.matrix) if row.matrix else None,
                "conclusion": str(row.conclusion) if row.conclusion else "cancelled",
                "reason": row.reason,
                "outputs": dict(row.outputs),
                "steps": steps,
            }
        )
    conclusion = str(run.conclusion) if run.conclusion else "cancelled"
    return {"conclusion": conclusion, "jobs": jobs}

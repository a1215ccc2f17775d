"""CPU a runner's executor spends on one-step jobs, without a server.

    python bench/runner_job.py [--jobs 500] [--rounds 3]

Runs `--jobs` no-op jobs (`run: "true"`) one after another through the
runner's JobExecutor and directory trees, as the agent runs them, and prints
the executor's own CPU per job (the steps' processes not included) and wall
time per job. Reporting is in memory: the HTTP side is bench/throughput.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from workload import NOOP

from conveyor.runner.assignment import JobAssignment, StepReport
from conveyor.runner.executor import JobExecutor
from conveyor.runner.loop import run_event_loop
from conveyor.runner.workspace import Slots
from conveyor.workflow.parse import parse_workflow


class Reporter:
    """Takes what a job reports and keeps nothing."""

    def __init__(self) -> None:
        self.cancel = asyncio.Event()

    async def step_started(self, index: int, step_id: str | None, name: str) -> None:
        pass

    async def step_finished(self, report: StepReport) -> None:
        pass

    def log(self, step_index: int | None, line: str) -> None:
        pass

    async def flush(self) -> None:
        pass


async def drain(jobs: int, parent: str) -> tuple[float, float]:
    workflow = parse_workflow("noop.yml", NOOP)
    slots = Slots(parent, reuse_after=0.0)
    executor = JobExecutor(slots=slots, base_env=dict(os.environ))
    github = {"repository": "acme/widget", "event": {}, "event_name": "workflow_dispatch"}
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(jobs):
            assignment = JobAssignment(
                job_id=f"job-{n}",
                epoch=1,
                key="noop",
                name="noop",
                workflow=workflow,
                job=workflow.jobs["noop"],
                source_dir=None,
                contexts={"github": github},
            )
            outcome = await executor.run(assignment, Reporter())
            assert outcome.conclusion == "success", outcome
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        slots.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cpus, walls = [], []
    for _ in range(args.rounds):
        parent = tempfile.mkdtemp(prefix="conveyor-runner-job-")
        try:
            cpu, wall = run_event_loop(drain(args.jobs, parent))
        finally:
            shutil.rmtree(parent, ignore_errors=True)
        cpus.append(cpu * 1000 / args.jobs)
        walls.append(wall * 1000 / args.jobs)
    print(
        f"executor CPU per one-step job: {statistics.median(cpus):.3f} ms "
        f"(rounds: {', '.join(f'{c:.3f}' for c in cpus)}); "
        f"wall {statistics.median(walls):.3f} ms"
    )


if __name__ == "__main__":
    main()

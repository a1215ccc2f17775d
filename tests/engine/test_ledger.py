"""run_once_completions: which recorded step rows a retried job's run-once steps keep."""

from __future__ import annotations

from conveyor.engine.ledger import has_run_once, run_once_completions
from conveyor.engine.records import StepRecord
from conveyor.engine.states import Conclusion, StepStatus
from conveyor.workflow import parse_workflow

SOURCE = """\
on: push
jobs:
  deploy:
    runs-on: linux
    steps:
      - {id: migrate, run: ./migrate, run-once: true}
      - {id: notify, run: ./notify, run-once: true}
      - {id: build, run: ./build}
      - {id: seed, run: ./seed, run-once: true}
      - {id: tag, run: ./tag, run-once: true}
"""
JOB = parse_workflow("ci.yml", SOURCE).jobs["deploy"]
OK = Conclusion.SUCCESS


def row(index: int, status: StepStatus, outcome: Conclusion | None, epoch: int) -> StepRecord:
    return StepRecord(
        "job", index, None, f"step {index}", status, outcome, outcome, {}, 1, 2, epoch
    )


def test_only_succeeded_run_once_steps_of_earlier_leases_count() -> None:
    rows = [
        row(0, StepStatus.COMPLETED, OK, 1),  # ran and succeeded under lease 1
        row(1, StepStatus.FAILED, Conclusion.FAILURE, 1),
        row(2, StepStatus.COMPLETED, OK, 1),  # not run-once
        row(3, StepStatus.SKIPPED, Conclusion.SKIPPED, 1),  # its `if:` was false
        row(4, StepStatus.RUNNING, None, 1),  # the runner died in it
    ]
    assert [r.index for r in run_once_completions(JOB, rows, 2)] == [0]


def test_a_restored_completion_counts_again_and_the_current_lease_writes_none() -> None:
    restored = row(0, StepStatus.SKIPPED, OK, 2)  # lease 2 restored it, then died
    assert run_once_completions(JOB, [restored], 3) == [restored]
    assert run_once_completions(JOB, [restored], 2) == []


def test_a_job_without_run_once_steps_needs_no_read() -> None:
    plain = parse_workflow("ci.yml", SOURCE.replace("run-once: true", "run-once: false"))
    assert has_run_once(JOB) and not has_run_once(plain.jobs["deploy"])

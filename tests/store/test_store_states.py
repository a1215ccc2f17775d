"""The transition table is the design's state machines, and its helpers agree with it."""

from __future__ import annotations

import pytest

from conveyor.engine.states import (
    JOB_TRANSITIONS,
    LEASED,
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    JobStatus,
    RunStatus,
    StepStatus,
    allowed_from,
    is_terminal,
)

J = JobStatus
S = StepStatus

DESIGN_JOB_EDGES = {
    J.PENDING: {J.QUEUED, J.SKIPPED, J.CANCELLED, J.FAILED, J.COMPLETED},
    J.QUEUED: {J.ACQUIRED, J.CANCELLED},
    J.ACQUIRED: {J.RUNNING, J.QUEUED, J.CANCELLED, J.FAILED},
    J.RUNNING: {J.COMPLETED, J.FAILED, J.CANCELLED, J.QUEUED},
    J.COMPLETED: set(),
    J.FAILED: set(),
    J.CANCELLED: set(),
    J.SKIPPED: set(),
}
DESIGN_RUN_EDGES = {
    RunStatus.QUEUED: {RunStatus.IN_PROGRESS, RunStatus.COMPLETED},
    RunStatus.IN_PROGRESS: {RunStatus.COMPLETED},
    RunStatus.COMPLETED: set(),
}
DESIGN_STEP_EDGES = {
    S.PENDING: {S.RUNNING, S.SKIPPED, S.FAILED},
    S.RUNNING: {S.COMPLETED, S.FAILED},
    S.COMPLETED: set(),
    S.FAILED: set(),
    S.SKIPPED: set(),
}


@pytest.mark.parametrize(
    ("table", "design"),
    [
        (JOB_TRANSITIONS, DESIGN_JOB_EDGES),
        (RUN_TRANSITIONS, DESIGN_RUN_EDGES),
        (STEP_TRANSITIONS, DESIGN_STEP_EDGES),
    ],
    ids=["job", "run", "step"],
)
def test_tables_are_the_designed_state_machines(table: object, design: object) -> None:
    assert table == design


@pytest.mark.parametrize("enum", [JobStatus, RunStatus, StepStatus])
def test_allowed_from_is_the_inverse_of_the_table(enum: type[JobStatus]) -> None:
    table = {JobStatus: JOB_TRANSITIONS, RunStatus: RUN_TRANSITIONS, StepStatus: STEP_TRANSITIONS}
    for target in enum:
        expected = {source for source in enum if target in table[enum][source]}
        assert allowed_from(target) == expected


def test_terminal_statuses() -> None:
    assert {s for s in JobStatus if is_terminal(s)} == {
        J.COMPLETED,
        J.FAILED,
        J.CANCELLED,
        J.SKIPPED,
    }
    assert {s for s in RunStatus if is_terminal(s)} == {RunStatus.COMPLETED}
    assert {s for s in StepStatus if is_terminal(s)} == {S.COMPLETED, S.FAILED, S.SKIPPED}


def test_only_the_reaper_edge_leaves_a_lease_backwards() -> None:
    assert {J.ACQUIRED, J.RUNNING} == LEASED
    assert allowed_from(J.QUEUED) - LEASED == {J.PENDING}


def test_statuses_are_plain_strings() -> None:
    assert RunStatus.IN_PROGRESS == "in_progress"
    assert f"{J.CANCELLED}" == "cancelled"
    assert StepStatus("skipped") is S.SKIPPED

"""The jobs one run consists of, with reusable-workflow calls expanded.

A job `C` that calls `./.github/workflows/x.yml` becomes the called workflow's
jobs, keyed `C/<inner>`; they are reported under `C`. Needs are resolved to
*groups*: a group is a job key and every key below it, so a job that needs
`C` waits for all of C's called jobs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from conveyor.errors import Diagnostic, Span, WorkflowError
from conveyor.workflow.model import Job, Workflow

MAX_CALL_DEPTH = 4
"""GitHub allows reusable workflows to nest four levels deep."""


@dataclass(frozen=True)
class CallSite:
    """A job that calls a reusable workflow, and where it sits."""

    key: str
    """The caller's full key (its group)."""
    job: Job
    caller_workflow: Workflow
    called: Workflow
    parent: CallSite | None
    need_groups: tuple[str, ...]


@dataclass(frozen=True)
class PlannedJob:
    """One job with steps, as the scheduler sees it."""

    key: str
    job: Job
    workflow: Workflow
    need_groups: tuple[str, ...]
    """Groups this job waits for (its own needs, or its caller's for a called root job)."""
    call: CallSite | None = None

    @property
    def report_id(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def prefix(self) -> str:
        return self.key.rsplit("/", 1)[0] + "/" if "/" in self.key else ""


def plan_run(workflow: Workflow, load: Callable[[str], Workflow]) -> list[PlannedJob]:
    """Every job of a run, in workflow order; `load` reads a called workflow by path."""
    planned: list[PlannedJob] = []
    _add_jobs(workflow, "", None, (), load, planned)
    return planned


def _add_jobs(
    workflow: Workflow,
    prefix: str,
    call: CallSite | None,
    root_needs: tuple[str, ...],
    load: Callable[[str], Workflow],
    out: list[PlannedJob],
) -> None:
    for key, job in workflow.jobs.items():
        groups = tuple(prefix + n for n in job.needs) or root_needs
        if job.uses is None:
            out.append(PlannedJob(prefix + key, job, workflow, groups, call))
            continue
        depth = 1 + _depth(call)
        if depth > MAX_CALL_DEPTH:
            raise _error(job, f"reusable workflows nest deeper than {MAX_CALL_DEPTH} levels")
        called = load(_called_path(job))
        if "workflow_call" not in called.on:
            raise _error(job, f"{job.uses} cannot be called: its `on:` has no workflow_call")
        site = CallSite(prefix + key, job, workflow, called, call, groups)
        _add_jobs(called, prefix + key + "/", site, groups, load, out)


def _called_path(job: Job) -> str:
    uses = (job.uses or "").strip()
    if not uses.startswith("./"):
        raise _error(
            job,
            f"{uses}: remote reusable workflows cannot be fetched; "
            "use a workflow of this repository (./.github/workflows/<file>.yml)",
        )
    return os.path.normpath(uses.split("@", 1)[0])


def _depth(call: CallSite | None) -> int:
    depth = 0
    while call is not None:
        depth, call = depth + 1, call.parent
    return depth


def _error(job: Job, message: str) -> WorkflowError:
    span = job.span if isinstance(job.span, Span) else Span("?", 1, 1)
    return WorkflowError([Diagnostic(span, "reusable-workflow", message)])


def group_members(group: str, keys: Mapping[str, object]) -> list[str]:
    """The job keys a group stands for: itself, or everything below it."""
    return [k for k in keys if k == group or k.startswith(group + "/")]

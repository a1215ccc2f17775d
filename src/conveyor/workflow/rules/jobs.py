"""Rules on the jobs of a workflow: their ids, what each must hold, and the `needs:` graph."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

from conveyor.errors import Diagnostic, Span
from conveyor.workflow.model import Workflow
from conveyor.workflow.plan import CycleError, plan
from conveyor.workflow.rules import Document
from conveyor.workflow.yamlload import YNode, YScalar, YSeq, quoted

JOB_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def job_ids(doc: Document) -> Iterator[Diagnostic]:
    """invalid-job-id: GitHub's ids start with a letter or '_', then letters, digits, '-', '_'."""
    if not isinstance(doc.model, Workflow):
        return
    for job in doc.model.jobs.values():
        if not JOB_ID.fullmatch(job.id):
            yield Diagnostic(
                job.span,
                "invalid-job-id",
                f"invalid job id {quoted(job.id)}: it must start with a letter or '_' and "
                "contain only letters, digits, '-' and '_'",
            )


def job_contents(doc: Document) -> Iterator[Diagnostic]:
    """missing-key: a job runs steps on a runner (`runs-on`, `steps`) unless it `uses:` a workflow."""
    if not isinstance(doc.model, Workflow):
        return
    for job in doc.model.jobs.values():
        if job.uses is not None:
            continue
        if doc.node("jobs", job.id, "runs-on") is None:
            yield Diagnostic(job.span, "missing-key", f"job '{job.id}' needs 'runs-on'")
        steps = doc.node("jobs", job.id, "steps")
        if steps is None:
            yield Diagnostic(job.span, "missing-key", f"job '{job.id}' needs 'steps'")
        elif _empty(steps):
            yield Diagnostic(steps.span, "missing-key", f"job '{job.id}' has no steps")


def needs(doc: Document) -> Iterator[Diagnostic]:
    """unknown-need, needs-cycle: every need names a job, and the graph has no cycle."""
    if not isinstance(doc.model, Workflow):
        return
    jobs = doc.model.jobs
    known = {}
    for job in jobs.values():
        for name in job.needs:
            if name not in jobs:
                yield Diagnostic(
                    _need_span(doc, job.id, name) or job.span,
                    "unknown-need",
                    f"job '{job.id}' needs unknown job {quoted(name)}; jobs: {', '.join(jobs)}",
                )
        known[job.id] = dataclasses.replace(job, needs=tuple(n for n in job.needs if n in jobs))
    try:
        plan(known)
    except CycleError as exc:
        first = jobs[exc.cycle[0]]
        span = _need_span(doc, first.id, exc.cycle[1]) or first.span
        yield Diagnostic(span, "needs-cycle", str(exc))


def _empty(node: YNode) -> bool:
    if isinstance(node, YSeq):
        return not node.items
    return isinstance(node, YScalar) and node.value is None


def _need_span(doc: Document, job_id: str, name: str) -> Span | None:
    node = doc.node("jobs", job_id, "needs")
    items = node.items if isinstance(node, YSeq) else (node,)
    for item in items:
        if isinstance(item, YScalar) and item.text == name:
            return item.span
    return None

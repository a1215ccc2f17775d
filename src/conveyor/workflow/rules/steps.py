"""Rules on steps (of jobs and of composite actions): `run` xor `uses`, and step ids."""

from __future__ import annotations

import re
from collections.abc import Iterator

from conveyor.errors import Diagnostic
from conveyor.workflow.rules import Document
from conveyor.workflow.yamlload import YScalar, quoted

STEP_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def run_or_uses(doc: Document) -> Iterator[Diagnostic]:
    """step-run-and-uses: a step either runs a script or uses an action, never both or neither."""
    for _, step in doc.step_paths():
        run, uses = step.key("run"), step.key("uses")
        if run is not None and uses is not None:
            later = max(run, uses, key=lambda key: (key.span.line, key.span.col))
            yield Diagnostic(
                later.span, "step-run-and-uses", "a step cannot have both 'run' and 'uses'"
            )
        elif run is None and uses is None:
            yield Diagnostic(step.span, "step-run-and-uses", "a step needs either 'run' or 'uses'")


def step_ids(doc: Document) -> Iterator[Diagnostic]:
    """duplicate-step-id, invalid-step-id: ids are unique within a job and look like job ids."""
    seen: dict[tuple[str | int, ...], set[str]] = {}
    for path, step in doc.step_paths():
        node = step.get("id")
        if not isinstance(node, YScalar) or node.value is None:
            continue
        step_id = node.text
        if not STEP_ID.fullmatch(step_id) and "${{" not in step_id:
            yield Diagnostic(
                node.span,
                "invalid-step-id",
                f"invalid step id {quoted(step_id)}: it must start with a letter or '_' and "
                "contain only letters, digits, '-' and '_'",
            )
        ids = seen.setdefault(path[:-1], set())
        if step_id in ids:
            yield Diagnostic(
                node.span,
                "duplicate-step-id",
                f"step id {quoted(step_id)} is already used in this job",
            )
        ids.add(step_id)

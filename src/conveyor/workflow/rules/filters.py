"""Rules on `on:` filters: branch, tag and path patterns compile, cron schedules parse."""

from __future__ import annotations

from collections.abc import Iterator

from conveyor.errors import Diagnostic
from conveyor.workflow.cron import parse_cron
from conveyor.workflow.glob import compile_glob
from conveyor.workflow.model import Workflow
from conveyor.workflow.parse_triggers import FILTER_KEYS
from conveyor.workflow.rules import Document
from conveyor.workflow.yamlload import YMap, YNode, YScalar, YSeq


def globs(doc: Document) -> Iterator[Diagnostic]:
    """invalid-glob: each pattern under branches/tags/paths (and their -ignore) compiles."""
    if not isinstance(doc.model, Workflow):
        return
    for event in doc.model.on:
        config = doc.node("on", event)
        if not isinstance(config, YMap):
            continue
        for key in FILTER_KEYS:
            for item in _items(config.get(key)):
                try:
                    compile_glob(item.text)
                except ValueError as error:
                    yield Diagnostic(item.span, "invalid-glob", f"{key}: {error}")


def crons(doc: Document) -> Iterator[Diagnostic]:
    """invalid-cron: each `schedule` entry is a valid five-field cron expression."""
    if not isinstance(doc.model, Workflow) or "schedule" not in doc.model.on:
        return
    schedule = doc.node("on", "schedule")
    if not isinstance(schedule, YSeq):
        return
    for entry in schedule.items:
        cron = entry.get("cron") if isinstance(entry, YMap) else None
        if isinstance(cron, YScalar) and isinstance(cron.value, str):
            try:
                parse_cron(cron.text)
            except ValueError as error:
                yield Diagnostic(cron.span, "invalid-cron", str(error))


def _items(node: YNode | None) -> Iterator[YScalar]:
    if isinstance(node, YScalar) and node.value is not None:
        yield node
    elif isinstance(node, YSeq):
        yield from (item for item in node.items if isinstance(item, YScalar))

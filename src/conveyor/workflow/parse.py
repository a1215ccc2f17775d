"""Read workflow and action files into the immutable model, reporting every problem at once.

`load_workflow` and `load_action` are the entry points: they read the file,
build the positioned YAML tree, convert it (checking keys and types), run
the validation rules, and raise WorkflowError listing every diagnostic.
"""

from __future__ import annotations

import functools

from conveyor.errors import Diagnostic, Span, WorkflowError
from conveyor.workflow.model import Action, Job, RunDefaults, Workflow
from conveyor.workflow.parse_base import ParseContext, frozen
from conveyor.workflow.parse_jobs import (
    parse_concurrency,
    parse_job,
    parse_permissions,
    parse_steps,
)
from conveyor.workflow.parse_triggers import parse_inputs, parse_on, parse_outputs
from conveyor.workflow.validate import Document, check
from conveyor.workflow.yamlload import MAX_BYTES, YMap, YNode, YScalar, load_yaml

WORKFLOW_KEYS = ("name", "run-name", "on", "env", "defaults", "concurrency", "permissions", "jobs")
ACTION_KEYS = ("name", "description", "author", "inputs", "outputs", "runs", "branding")
_COMPOSITE_KEYS = ("using", "steps")


def read_source(path: str, display: str) -> str:
    """The text of a file, decoded as UTF-8; unreadable or undecodable files raise WorkflowError."""
    start = Span(display, 1, 1)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        message = f"cannot read file: {exc.strerror or exc}"
        raise WorkflowError([Diagnostic(start, "io-error", message)]) from None
    if len(data) > MAX_BYTES:
        raise WorkflowError(
            [Diagnostic(start, "yaml-limit", f"file is larger than {MAX_BYTES} bytes")]
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start].decode("utf-8-sig", "replace")
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        message = f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x})"
        raise WorkflowError([Diagnostic(Span(display, line, col), "encoding", message)]) from None


def load_workflow(
    path: str, text: str | None = None, *, display_path: str | None = None
) -> Workflow:
    """Parse and validate a workflow file (or `text` given for it); raise WorkflowError on problems.

    Spans name `display_path` when given, else `path`.
    """
    display = display_path or path
    if text is None:
        text = read_source(path, display)
    root, problems = load_yaml(text, display)
    ctx = ParseContext(display)
    ctx.diagnostics.extend(problems)
    workflow = _workflow(ctx, root, display)
    if workflow is not None and root is not None:
        ctx.diagnostics.extend(check(Document(display, text, root, workflow)))
    if ctx.diagnostics:
        raise WorkflowError(ctx.diagnostics)
    assert workflow is not None  # every path that returns None reports a problem
    return workflow


@functools.lru_cache(maxsize=256)
def parse_workflow(path: str, text: str, display_path: str | None = None) -> Workflow:
    """`load_workflow(path, text=text)`, remembered: the model is immutable, and a
    server parses the same registered text for every run and every job of it."""
    return load_workflow(path, text=text, display_path=display_path)


def load_action(path: str, text: str | None = None, *, display_path: str | None = None) -> Action:
    """Parse and validate an `action.yml`; composite actions keep their steps."""
    display = display_path or path
    if text is None:
        text = read_source(path, display)
    root, problems = load_yaml(text, display)
    ctx = ParseContext(display)
    ctx.diagnostics.extend(problems)
    action = _action(ctx, root, display)
    if action is not None and root is not None:
        ctx.diagnostics.extend(check(Document(display, text, root, action)))
    if ctx.diagnostics:
        raise WorkflowError(ctx.diagnostics)
    assert action is not None
    return action


def _root(ctx: ParseContext, root: YNode | None, what: str) -> YMap | None:
    if root is None or (isinstance(root, YScalar) and root.value is None):
        span = Span(ctx.file, 1, 1) if root is None else root.span
        ctx.report(span, f"empty-{what}", f"the {what} file is empty")
        return None
    if not isinstance(root, YMap):
        ctx.wrong_type(root, what, "a mapping")
        return None
    return root


def _workflow(ctx: ParseContext, root: YNode | None, path: str) -> Workflow | None:
    node = _root(ctx, root, "workflow")
    if node is None:
        return None
    ctx.check_keys(node, WORKFLOW_KEYS, "workflow")
    on = node.get("on")
    if on is None:
        ctx.missing(node.span, "on", "a workflow")
    defaults = ctx.run_defaults(node.get("defaults"), "workflow")
    return Workflow(
        path=path,
        span=node.span,
        jobs=frozen(_jobs(ctx, node, defaults)),
        on=parse_on(ctx, on) if on is not None else frozen({}),
        name=ctx.text(node.get("name"), "name"),
        run_name=ctx.text(node.get("run-name"), "run-name"),
        env=ctx.string_map(node.get("env"), "env"),
        defaults=defaults,
        concurrency=parse_concurrency(ctx, node.get("concurrency")),
        permissions=parse_permissions(ctx, node.get("permissions")),
    )


def _jobs(ctx: ParseContext, node: YMap, defaults: RunDefaults) -> dict[str, Job]:
    jobs_node = node.get("jobs")
    if jobs_node is None:
        ctx.missing(node.span, "jobs", "a workflow")
        return {}
    mapping = ctx.mapping(jobs_node, "jobs")
    if mapping is None or not mapping.items:
        ctx.report(jobs_node.span, "missing-key", "jobs: a workflow needs at least one job")
        return {}
    jobs = {}
    for key, value in mapping.items:
        job = parse_job(ctx, key, value, defaults)
        if job is not None:
            jobs[key.text] = job
    return jobs


def _action(ctx: ParseContext, root: YNode | None, path: str) -> Action | None:
    node = _root(ctx, root, "action")
    if node is None:
        return None
    ctx.check_keys(node, ACTION_KEYS, "action")
    runs = ctx.mapping(node.get("runs"), "runs")
    if runs is None:
        ctx.missing(node.span, "runs", "an action")
        return None
    using = ctx.string(runs.get("using"), "using")
    if using is None:
        ctx.missing(runs.span, "using", "runs")
        return None
    composite = using == "composite"
    if composite:
        ctx.check_keys(runs, _COMPOSITE_KEYS, "runs of a composite action")
        if "steps" not in runs:
            ctx.missing(runs.span, "steps", "a composite action")
    steps = parse_steps(ctx, runs.get("steps")) if composite else ()
    for step in steps:
        if step.run is not None and step.shell is None:
            ctx.missing(step.span, "shell", "a run step in a composite action")
    return Action(
        path=path,
        span=node.span,
        using=using,
        name=ctx.text(node.get("name"), "name"),
        description=ctx.text(node.get("description"), "description"),
        inputs=parse_inputs(ctx, node.get("inputs"), "action"),
        outputs=parse_outputs(ctx, node.get("outputs"), "action", required=composite),
        steps=steps,
    )

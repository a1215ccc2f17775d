"""Parse `on:` (events and their filters) and the input/output specs of workflows and actions."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from conveyor.workflow.model import InputSpec, OutputSpec, Raw, Trigger
from conveyor.workflow.parse_base import ParseContext, frozen
from conveyor.workflow.yamlload import YMap, YNode, YScalar, YSeq, quoted, to_plain

_TYPES = ("types",)
_PR = ("types", "branches", "branches-ignore", "paths", "paths-ignore")

EVENT_KEYS: Mapping[str, tuple[str, ...]] = {
    "branch_protection_rule": _TYPES,
    "check_run": _TYPES,
    "check_suite": _TYPES,
    "create": (),
    "delete": (),
    "deployment": (),
    "deployment_status": (),
    "discussion": _TYPES,
    "discussion_comment": _TYPES,
    "fork": (),
    "gollum": (),
    "issue_comment": _TYPES,
    "issues": _TYPES,
    "label": _TYPES,
    "merge_group": _TYPES,
    "milestone": _TYPES,
    "page_build": (),
    "project": _TYPES,
    "project_card": _TYPES,
    "project_column": _TYPES,
    "public": (),
    "pull_request": _PR,
    "pull_request_review": _TYPES,
    "pull_request_review_comment": _TYPES,
    "pull_request_target": _PR,
    "push": ("branches", "branches-ignore", "tags", "tags-ignore", "paths", "paths-ignore"),
    "registry_package": _TYPES,
    "release": _TYPES,
    "repository_dispatch": _TYPES,
    "schedule": (),
    "status": (),
    "watch": _TYPES,
    "workflow_call": ("inputs", "outputs", "secrets"),
    "workflow_dispatch": ("inputs",),
    "workflow_run": ("types", "workflows", "branches", "branches-ignore"),
}
"""Every event a workflow can name, with the keys its configuration may hold."""

FILTER_KEYS = ("branches", "branches-ignore", "tags", "tags-ignore", "paths", "paths-ignore")

_INPUT_KEYS = {
    "workflow_dispatch": ("description", "required", "default", "type", "options"),
    "workflow_call": ("description", "required", "default", "type"),
    "action": ("description", "required", "default", "deprecationMessage"),
}
_INPUT_TYPES = {
    "workflow_dispatch": ("string", "boolean", "choice", "number", "environment"),
    "workflow_call": ("string", "boolean", "number"),
    "action": ("string",),
}


def parse_on(ctx: ParseContext, node: YNode) -> Mapping[str, Trigger]:
    """`on:` as a string, a sequence of event names, or a mapping of events to their filters."""
    triggers: dict[str, Trigger] = {}
    problems = len(ctx.diagnostics)
    if isinstance(node, YScalar) and isinstance(node.value, str):
        _add_event(ctx, node, triggers)
    elif isinstance(node, YSeq):
        for item in node.items:
            if isinstance(item, YScalar) and isinstance(item.value, str):
                _add_event(ctx, item, triggers)
            else:
                ctx.wrong_type(item, "on", "an event name")
    elif isinstance(node, YMap):
        for key, value in node.items:
            if _known_event(ctx, key):
                triggers[key.text] = _trigger(ctx, key, value)
    else:
        ctx.wrong_type(node, "on", "an event name, a sequence or a mapping of events")
    if not triggers and len(ctx.diagnostics) == problems:
        ctx.report(node.span, "missing-key", "on: a workflow needs at least one event")
    return frozen(triggers)


def _add_event(ctx: ParseContext, node: YScalar, triggers: dict[str, Trigger]) -> None:
    if _known_event(ctx, node):
        triggers[node.text] = Trigger(node.text, node.span)


def _known_event(ctx: ParseContext, node: YScalar) -> bool:
    if node.text in EVENT_KEYS:
        return True
    message = f"unknown event {quoted(node.text)}"
    close = difflib.get_close_matches(node.text, list(EVENT_KEYS), n=1)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    ctx.report(node.span, "unknown-event", message)
    return False


def _trigger(ctx: ParseContext, key: YScalar, node: YNode) -> Trigger:
    event = key.text
    if event == "schedule":
        return Trigger(event, key.span, crons=_crons(ctx, node))
    config = ctx.mapping(node, event, EVENT_KEYS[event], f"'{event}' event")
    if config is None:
        return Trigger(event, key.span)
    for plain, ignore in (("branches", "branches-ignore"), ("tags", "tags-ignore")):
        _exclusive(ctx, config, plain, ignore)
    _exclusive(ctx, config, "paths", "paths-ignore")
    inputs: Mapping[str, InputSpec] = {}
    if "inputs" in config and event in _INPUT_KEYS:  # elsewhere `inputs` is an unknown key
        inputs = parse_inputs(ctx, config.get("inputs"), event)
    return Trigger(
        event,
        key.span,
        types=ctx.strings(config.get("types"), "types"),
        workflows=ctx.strings(config.get("workflows"), "workflows"),
        inputs=inputs,
        outputs=parse_outputs(ctx, config.get("outputs"), f"{event} outputs", required=True),
        secrets=_secrets(ctx, config.get("secrets")),
        branches=ctx.strings(config.get("branches"), "branches"),
        branches_ignore=ctx.strings(config.get("branches-ignore"), "branches-ignore"),
        tags=ctx.strings(config.get("tags"), "tags"),
        tags_ignore=ctx.strings(config.get("tags-ignore"), "tags-ignore"),
        paths=ctx.strings(config.get("paths"), "paths"),
        paths_ignore=ctx.strings(config.get("paths-ignore"), "paths-ignore"),
    )


def _exclusive(ctx: ParseContext, config: YMap, plain: str, ignore: str) -> None:
    key = config.key(ignore)
    if key is not None and plain in config:
        ctx.report(key.span, "filter-conflict", f"'{plain}' and '{ignore}' cannot be used together")


def _crons(ctx: ParseContext, node: YNode) -> tuple[str, ...]:
    if not isinstance(node, YSeq):
        ctx.wrong_type(node, "schedule", "a sequence of {cron: ...} mappings")
        return ()
    crons = []
    for item in node.items:
        entry = ctx.mapping(item, "schedule", ("cron",), "schedule entry")
        if entry is None:
            if not isinstance(item, YMap):
                ctx.wrong_type(item, "schedule", "a {cron: ...} mapping")
            continue
        cron = ctx.string(entry.get("cron"), "cron")
        if "cron" not in entry:
            ctx.missing(entry.span, "cron", "a schedule entry")
        elif cron is not None:
            crons.append(cron)
    return tuple(crons)


def parse_inputs(ctx: ParseContext, node: YNode | None, owner: str) -> Mapping[str, InputSpec]:
    """Inputs of `workflow_dispatch`, `workflow_call` or an action (`owner`: 'action')."""
    mapping = ctx.mapping(node, "inputs")
    if mapping is None:
        return frozen({})
    allowed, types = _INPUT_KEYS[owner], _INPUT_TYPES[owner]
    specs: dict[str, InputSpec] = {}
    for key, value in mapping.items:
        spec = ctx.mapping(value, f"inputs.{key.text}", allowed, f"input '{key.text}'")
        if spec is None:
            specs[key.text] = InputSpec(key.text)
            continue
        kind = ctx.string(spec.get("type"), "type") or "string"
        type_node = spec.get("type")
        if type_node is not None and kind not in types:
            ctx.report(
                type_node.span,
                "wrong-type",
                f"type: unknown input type {quoted(kind)}; allowed: {', '.join(types)}",
            )
        options = ctx.strings(spec.get("options"), "options") or ()
        if kind == "choice" and not options:
            ctx.missing(key.span, "options", f"choice input '{key.text}'")
        required = ctx.flag(spec.get("required"), "required", False)
        specs[key.text] = InputSpec(
            name=key.text,
            type=kind,
            description=ctx.text(spec.get("description"), "description"),
            required=required is True,
            default=to_plain(spec.get("default")),
            options=options,
        )
    return frozen(specs)


def parse_outputs(
    ctx: ParseContext, node: YNode | None, where: str, *, required: bool
) -> Mapping[str, OutputSpec]:
    """Outputs of a reusable workflow or an action: `{description, value}` each."""
    mapping = ctx.mapping(node, "outputs")
    if mapping is None:
        return frozen({})
    outputs: dict[str, OutputSpec] = {}
    for key, value in mapping.items:
        spec = ctx.mapping(
            value, f"outputs.{key.text}", ("description", "value"), f"output '{key.text}'"
        )
        if spec is None:
            if required:
                ctx.missing(key.span, "value", f"output '{key.text}' of {where}")
            outputs[key.text] = OutputSpec(key.text)
            continue
        if required and "value" not in spec:
            ctx.missing(key.span, "value", f"output '{key.text}' of {where}")
        outputs[key.text] = OutputSpec(
            name=key.text,
            value=ctx.text(spec.get("value"), "value"),
            description=ctx.text(spec.get("description"), "description"),
        )
    return frozen(outputs)


def _secrets(ctx: ParseContext, node: YNode | None) -> Mapping[str, Raw]:
    mapping = ctx.mapping(node, "secrets")
    if mapping is None:
        return frozen({})
    for key, value in mapping.items:
        ctx.mapping(
            value, f"secrets.{key.text}", ("description", "required"), f"secret '{key.text}'"
        )
    return frozen({key.text: to_plain(value) for key, value in mapping.items})

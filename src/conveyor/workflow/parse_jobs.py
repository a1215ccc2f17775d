"""Parse `jobs:` entries and `steps:` lists (also the steps of composite actions) into the model."""

from __future__ import annotations

from collections.abc import Mapping

from conveyor.workflow.model import (
    DEFAULT_JOB_TIMEOUT_MINUTES,
    EMPTY,
    Concurrency,
    Container,
    Job,
    Raw,
    RunDefaults,
    Step,
    Strategy,
)
from conveyor.workflow.parse_base import ParseContext, as_text, frozen, is_expression
from conveyor.workflow.yamlload import YMap, YNode, YScalar, YSeq, quoted, to_plain

STEP_KEYS = (
    "id",
    "name",
    "if",
    "run",
    "uses",
    "with",
    "env",
    "shell",
    "working-directory",
    "continue-on-error",
    "timeout-minutes",
)
JOB_STEP_KEYS = (*STEP_KEYS, "run-once")
"""A job's steps also take Conveyor's extension `run-once` (see docs/exactly-once.md)."""
_RUN_ONLY = ("run", "shell", "working-directory")
_USES_ONLY = ("uses", "with")

JOB_KEYS = (
    "name",
    "needs",
    "runs-on",
    "if",
    "env",
    "defaults",
    "strategy",
    "outputs",
    "steps",
    "timeout-minutes",
    "continue-on-error",
    "container",
    "services",
    "concurrency",
    "permissions",
    "environment",
)
CALLER_JOB_KEYS = (
    "name",
    "uses",
    "with",
    "secrets",
    "needs",
    "if",
    "permissions",
    "strategy",
    "concurrency",
)
"""The keys of a job that calls a reusable workflow (`uses:`)."""

_CONTAINER_KEYS = ("image", "credentials", "env", "ports", "volumes", "options")


def parse_steps(
    ctx: ParseContext, node: YNode | None, keys: tuple[str, ...] = STEP_KEYS
) -> tuple[Step, ...]:
    """A `steps:` sequence whose steps may hold `keys`; entries that are not mappings are
    reported and left out."""
    if node is None:
        return ()
    if not isinstance(node, YSeq):
        ctx.wrong_type(node, "steps", "a sequence of steps")
        return ()
    steps: list[Step] = []
    for item in node.items:
        if isinstance(item, YMap):
            steps.append(parse_step(ctx, item, len(steps), keys))
        else:
            ctx.wrong_type(item, "steps", "a step (a mapping)")
    return tuple(steps)


def parse_step(
    ctx: ParseContext, node: YMap, index: int, keys: tuple[str, ...] = STEP_KEYS
) -> Step:
    """One step; `run` and `uses` each allow only their own keys."""
    allowed = keys
    where = "step"
    if "uses" in node and "run" not in node:
        allowed = tuple(key for key in keys if key not in _RUN_ONLY)
        where = "a step that uses an action"
    elif "run" in node and "uses" not in node:
        allowed = tuple(key for key in keys if key not in _USES_ONLY)
        where = "a run step"
    node = ctx.known(node, allowed, where)
    return Step(
        index=index,
        span=node.span,
        id=ctx.text(node.get("id"), "id"),
        name=_scalar(ctx, node.get("name"), "name"),
        if_=condition(ctx, node.get("if")),
        run=ctx.text(node.get("run"), "run", nullable=False),
        uses=ctx.text(node.get("uses"), "uses", nullable=False),
        with_=_string_values(ctx, node.get("with"), "with"),
        env=ctx.string_map(node.get("env"), "env"),
        shell=ctx.text(node.get("shell"), "shell"),
        working_directory=ctx.text(node.get("working-directory"), "working-directory"),
        continue_on_error=ctx.flag(node.get("continue-on-error"), "continue-on-error", False),
        timeout_minutes=ctx.number(node.get("timeout-minutes"), "timeout-minutes"),
        run_once=_literal_flag(ctx, node.get("run-once"), "run-once"),
    )


def parse_job(ctx: ParseContext, key: YScalar, node: YNode, defaults: RunDefaults) -> Job | None:
    """One entry of `jobs:`; `defaults` are the workflow's, merged under the job's own."""
    if not isinstance(node, YMap):
        ctx.wrong_type(node, f"jobs.{key.text}", "a job (a mapping)")
        return None
    if "uses" in node:
        node = ctx.known(node, CALLER_JOB_KEYS, "a job that calls a reusable workflow")
    else:
        node = ctx.known(node, JOB_KEYS, "job")
    own = ctx.run_defaults(node.get("defaults"), "job")
    timeout = ctx.number(node.get("timeout-minutes"), "timeout-minutes")
    return Job(
        id=key.text,
        span=key.span,
        name=_scalar(ctx, node.get("name"), "name"),
        needs=ctx.strings(node.get("needs"), "needs") or (),
        runs_on=_runs_on(ctx, node.get("runs-on")),
        if_=condition(ctx, node.get("if")),
        env=ctx.string_map(node.get("env"), "env"),
        defaults=RunDefaults(
            shell=own.shell or defaults.shell,
            working_directory=own.working_directory or defaults.working_directory,
        ),
        strategy=_strategy(ctx, node.get("strategy")),
        outputs=_string_values(ctx, node.get("outputs"), "outputs"),
        steps=parse_steps(ctx, node.get("steps"), JOB_STEP_KEYS),
        timeout_minutes=DEFAULT_JOB_TIMEOUT_MINUTES if timeout is None else timeout,
        continue_on_error=ctx.flag(node.get("continue-on-error"), "continue-on-error", False),
        container=_container(ctx, node.get("container"), "container"),
        services=_services(ctx, node.get("services")),
        concurrency=parse_concurrency(ctx, node.get("concurrency")),
        permissions=parse_permissions(ctx, node.get("permissions")),
        environment=_environment(ctx, node.get("environment")),
        uses=ctx.text(node.get("uses"), "uses", nullable=False),
        with_=ctx.raw_map(node.get("with"), "with"),
        secrets=_secrets(ctx, node.get("secrets")),
    )


def condition(ctx: ParseContext, node: YNode | None) -> Raw:
    """`if:` — a boolean, a number or an expression (with or without `${{ }}`)."""
    if node is None:
        return None
    if isinstance(node, YScalar) and node.value is not None:
        return node.value
    ctx.wrong_type(node, "if", "a boolean, a number or an expression")
    return None


def parse_concurrency(ctx: ParseContext, node: YNode | None) -> Concurrency | None:
    """`concurrency:` — a group name, or `{group, cancel-in-progress}`."""
    if node is None:
        return None
    if isinstance(node, YScalar) and node.value is not None:
        return Concurrency(group=as_text(node))
    mapping = ctx.mapping(node, "concurrency", ("group", "cancel-in-progress"))
    if mapping is None:
        if isinstance(node, YScalar):
            ctx.wrong_type(node, "concurrency", "a group name or a mapping")
        return None
    if "group" not in mapping:
        ctx.missing(mapping.span, "group", "concurrency")
    return Concurrency(
        group=ctx.text(mapping.get("group"), "group"),
        cancel_in_progress=ctx.flag(mapping.get("cancel-in-progress"), "cancel-in-progress", False),
    )


def parse_permissions(ctx: ParseContext, node: YNode | None) -> Raw:
    """`permissions:` — 'read-all', 'write-all', an expression, or scope → read|write|none."""
    if node is None:
        return None
    if isinstance(node, YScalar) and isinstance(node.value, str):
        if node.text not in ("read-all", "write-all") and not is_expression(node.text):
            ctx.report(
                node.span,
                "wrong-type",
                f"permissions: expected 'read-all', 'write-all' or a mapping, got {quoted(node.text)}",
            )
        return node.text
    mapping = ctx.mapping(node, "permissions")
    if mapping is None:
        if isinstance(node, YScalar):
            ctx.wrong_type(node, "permissions", "a string or a mapping")
        return None
    for scope, level in mapping.items:
        if not (isinstance(level, YScalar) and level.text in ("read", "write", "none")):
            ctx.report(
                level.span,
                "wrong-type",
                f"permissions.{scope.text}: expected 'read', 'write' or 'none'",
            )
    return to_plain(mapping)


def _literal_flag(ctx: ParseContext, node: YNode | None, key: str) -> bool:
    """`true` or `false` as written: the server reads it before any context exists."""
    if node is None:
        return False
    if isinstance(node, YScalar) and isinstance(node.value, bool):
        return node.value
    ctx.wrong_type(node, key, "true or false (not an expression)")
    return False


def _scalar(ctx: ParseContext, node: YNode | None, key: str) -> Raw:
    if node is None or isinstance(node, YScalar):
        return None if node is None else node.value
    ctx.wrong_type(node, key, "a string")
    return None


def _string_values(ctx: ParseContext, node: YNode | None, key: str) -> Mapping[str, str]:
    """A mapping whose scalar values GitHub reads as strings (`with:`, `outputs:`)."""
    mapping = ctx.mapping(node, key)
    if mapping is None:
        return EMPTY
    result = {}
    for name, value in mapping.items:
        if isinstance(value, YScalar):
            result[name.text] = as_text(value)
        else:
            ctx.wrong_type(value, f"{key}.{name.text}", "a string")
    return frozen(result)


def _runs_on(ctx: ParseContext, node: YNode | None) -> Raw:
    if node is None:
        return None
    if isinstance(node, YMap):
        ctx.check_keys(node, ("group", "labels"), "runs-on")
        ctx.text(node.get("group"), "runs-on.group")
        ctx.strings(node.get("labels"), "runs-on.labels")
    elif isinstance(node, YSeq) or node.value is not None:
        ctx.strings(node, "runs-on")
    else:
        ctx.wrong_type(node, "runs-on", "a label, a sequence of labels or {group, labels}")
    return to_plain(node)


def _strategy(ctx: ParseContext, node: YNode | None) -> Strategy | None:
    mapping = ctx.mapping(node, "strategy", ("matrix", "fail-fast", "max-parallel"))
    if mapping is None:
        return None
    parallel = ctx.number(mapping.get("max-parallel"), "max-parallel")
    return Strategy(
        matrix=_matrix(ctx, mapping.get("matrix")),
        fail_fast=ctx.flag(mapping.get("fail-fast"), "fail-fast", True),
        max_parallel=int(parallel) if isinstance(parallel, int | float) else parallel,
    )


def _matrix(ctx: ParseContext, node: YNode | None) -> Raw:
    """`matrix:` — an expression, or vectors (sequences or expressions) with include/exclude."""
    if node is None:
        return None
    if isinstance(node, YScalar) and is_expression(node.value):
        return node.text
    if not isinstance(node, YMap):
        ctx.wrong_type(node, "matrix", "a mapping or an expression")
        return None
    for key, value in node.items:
        if is_expression(key.text) or (isinstance(value, YScalar) and is_expression(value.value)):
            continue
        if not isinstance(value, YSeq):
            ctx.wrong_type(value, f"matrix.{key.text}", "a sequence or an expression")
        elif key.text in ("include", "exclude"):
            for item in value.items:
                expression = isinstance(item, YScalar) and is_expression(item.value)
                if not isinstance(item, YMap) and not expression:
                    ctx.wrong_type(item, f"matrix.{key.text}", "a mapping or an expression")
    return to_plain(node)


def _container(ctx: ParseContext, node: YNode | None, key: str) -> Container | None:
    if node is None:
        return None
    if isinstance(node, YScalar) and node.value is not None:
        return Container(image=as_text(node), span=node.span)
    mapping = ctx.mapping(node, key, _CONTAINER_KEYS, key)
    if mapping is None:
        if isinstance(node, YScalar):
            ctx.wrong_type(node, key, "an image name or a mapping")
        return None
    if "image" not in mapping:
        ctx.missing(mapping.span, "image", key)
    options = mapping.get("options")
    return Container(
        image=ctx.text(mapping.get("image"), "image"),
        span=mapping.span,
        env=_string_values(ctx, mapping.get("env"), "env"),
        ports=_sequence(ctx, mapping.get("ports"), "ports"),
        volumes=_sequence(ctx, mapping.get("volumes"), "volumes"),
        options=None if options is None else ctx.text(options, "options"),
        credentials=ctx.raw_map(mapping.get("credentials"), "credentials"),
    )


def _sequence(ctx: ParseContext, node: YNode | None, key: str) -> tuple[Raw, ...]:
    if node is None:
        return ()
    if not isinstance(node, YSeq):
        ctx.wrong_type(node, key, "a sequence")
        return ()
    return tuple(to_plain(item) for item in node.items)


def _services(ctx: ParseContext, node: YNode | None) -> Mapping[str, Container]:
    mapping = ctx.mapping(node, "services")
    if mapping is None:
        return EMPTY
    services = {}
    for name, value in mapping.items:
        service = _container(ctx, value, f"services.{name.text}")
        if service is not None:
            services[name.text] = service
    return frozen(services)


def _environment(ctx: ParseContext, node: YNode | None) -> Raw:
    if node is None:
        return None
    if isinstance(node, YScalar):
        if node.value is None:
            ctx.wrong_type(node, "environment", "a name or {name, url}")
        return None if node.value is None else as_text(node)
    mapping = ctx.mapping(node, "environment", ("name", "url"))
    if mapping is None:
        return None
    if "name" not in mapping:
        ctx.missing(mapping.span, "name", "environment")
    return to_plain(mapping)


def _secrets(ctx: ParseContext, node: YNode | None) -> Mapping[str, Raw] | str | None:
    if node is None:
        return None
    if isinstance(node, YScalar):
        if node.text == "inherit":
            return "inherit"
        ctx.wrong_type(node, "secrets", "'inherit' or a mapping")
        return None
    return _string_values(ctx, node, "secrets")

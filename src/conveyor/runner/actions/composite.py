"""Local composite actions (`uses: ./path`): inputs in, inner steps, outputs out."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from conveyor.errors import ExecutionError, WorkflowError
from conveyor.expr import render_value, to_string
from conveyor.workflow import load_action

if TYPE_CHECKING:
    from conveyor.runner.executor import JobState
    from conveyor.runner.steps import Scope
    from conveyor.workflow.model import Action, Step

MAX_DEPTH = 10
"""Composite actions may nest; a cycle must not recurse forever."""


def _find_action(workspace: str, uses: str) -> str:
    base = os.path.normpath(os.path.join(workspace, uses))
    if not (base == workspace or base.startswith(workspace.rstrip(os.sep) + os.sep)):
        raise ExecutionError(f"{uses}: a local action must be inside the workspace")
    for name in ("action.yml", "action.yaml"):
        path = os.path.join(base, name)
        if os.path.isfile(path):
            return path
    raise ExecutionError(f"{uses}: no action.yml or action.yaml in {uses}")


async def run_composite(
    state: JobState,
    scope: Scope,
    step: Step,
    ctx: Mapping[str, Any],
    step_env: Mapping[str, str],
) -> tuple[str, dict[str, str]]:
    from conveyor.runner.steps import Scope, environment_for, run_steps

    depth = scope.depth + 1
    if depth > MAX_DEPTH:
        raise ExecutionError(f"{step.uses}: composite actions nested deeper than {MAX_DEPTH}")
    path = _find_action(state.workspace, step.uses or ".")
    try:
        action = load_action(path)
    except WorkflowError as exc:
        raise ExecutionError(f"{step.uses}: invalid action:\n{exc}") from None
    if action.using != "composite":
        raise ExecutionError(
            f"{step.uses}: '{action.using}' actions cannot run here; only composite actions do"
        )
    environment = environment_for(state, scope, ctx)
    inputs = _inputs(action, step, environment, state, ctx)
    inner = Scope(
        steps=action.steps,
        env={**scope.env, **step_env},
        inputs=inputs,
        action_path=os.path.dirname(path),
        log_index=scope.log_index if scope.log_index is not None else step.index,
        depth=depth,
    )
    await run_steps(state, inner)
    outputs = _outputs(action, inner, state)
    return ("failure" if inner.status == "failure" else "success"), outputs


def _inputs(
    action: Action, step: Step, environment: Any, state: JobState, ctx: Mapping[str, Any]
) -> dict[str, Any]:
    given = render_value(dict(step.with_), environment)
    inputs: dict[str, Any] = {}
    for name, spec in action.inputs.items():
        if name in given:
            inputs[name] = to_string(given[name])
        elif spec.default is not None:
            inputs[name] = to_string(render_value(spec.default, environment))
        elif spec.required:
            raise ExecutionError(f"{step.uses}: input '{name}' is required")
        else:
            inputs[name] = ""
    for name, value in given.items():
        inputs.setdefault(str(name), to_string(value))
    return inputs


def _outputs(action: Action, inner: Scope, state: JobState) -> dict[str, str]:
    from conveyor.runner.steps import contexts_for, environment_for

    ctx = contexts_for(state, inner, {**state.env_context(), **inner.env})
    environment = environment_for(state, inner, ctx)
    return {
        name: to_string(render_value(spec.value, environment))
        for name, spec in action.outputs.items()
    }

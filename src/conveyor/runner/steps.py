"""Runs a list of steps (a job's, or a composite action's) against a `JobState`.

For each step: render its env, decide its `if:`, run it (`run:` through a
shell, `uses:` through an action), fold what it wrote to the environment
files and workflow commands back into the job, and record its outcome. A
run-once step whose completion the assignment carries (an automatic retry)
is not run: its recorded outputs are restored.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConveyorError, ExpressionError
from conveyor.expr import Environment, condition, evaluate, render_value, to_boolean, to_string
from conveyor.runner import workspace
from conveyor.runner.assignment import CompletedStep, StepReport
from conveyor.runner.commands import CommandProcessor
from conveyor.runner.envfiles import EnvFileError, parse_env_file, read_path_file
from conveyor.runner.executor import JobState, render_env, timeout_seconds
from conveyor.runner.process import run_process
from conveyor.runner.shell import resolve_shell, write_script
from conveyor.workflow.model import DEFAULT_SHELL, RunDefaults, Step


@dataclass
class Scope:
    """The steps being run and what they see: the job's, or a composite action's."""

    steps: Sequence[Step]
    env: dict[str, str] = field(default_factory=dict)
    """Env layered over the job's: a `uses:` step's env, seen inside its composite."""
    inputs: Mapping[str, Any] | None = None
    action_path: str | None = None
    defaults: RunDefaults = field(default_factory=RunDefaults)
    log_index: int | None = None
    """The top-level step whose log an inner step writes to (None: each its own)."""
    status: str = "success"
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The `steps` context: outputs, outcome and conclusion of each step with an id."""
    depth: int = 0
    """How many composite actions deep these steps are."""

    @property
    def top_level(self) -> bool:
        return self.log_index is None


@dataclass(frozen=True)
class StepResult:
    outcome: str
    conclusion: str
    outputs: Mapping[str, str]


async def run_steps(state: JobState, scope: Scope) -> None:
    for step in scope.steps:
        if state.reporter.cancel.is_set():
            state.cancelled = True
        result = await _run_one(state, scope, step)
        if step.id:
            scope.results[step.id] = {
                "outputs": dict(result.outputs),
                "outcome": result.outcome,
                "conclusion": result.conclusion,
            }
        if result.conclusion == "failure":
            scope.status = "failure"
            if scope.top_level:
                state.fail()
        elif result.conclusion == "cancelled":
            state.cancelled = True


async def _run_one(state: JobState, scope: Scope, step: Step) -> StepResult:
    index = step.index
    name = step.display_name
    completed = state.assignment.completed_steps.get(index) if scope.top_level else None
    if completed is not None and step.run_once:
        return await _restored(state, scope, step, completed)
    try:
        base_env = {**state.env_context(), **scope.env}
        step_env = render_env(
            step.env, environment_for(state, scope, contexts_for(state, scope, base_env))
        )
        env = {**base_env, **step_env}
        ctx = contexts_for(state, scope, env)
        name = _render_name(state, scope, step, ctx)
        run_it = _decide(state, scope, step, ctx)
    except ExpressionError as exc:
        return await _broken(state, scope, step, name, str(exc))

    if not run_it:
        result = StepResult("skipped", "skipped", {})
        await _finished(state, scope, step, name, result)
        return result
    if scope.top_level:
        await state.reporter.step_started(index, step.id, name)
    try:
        outcome, outputs = await _execute(state, scope, step, ctx, step_env)
        continue_on_error = _flag(state, scope, step.continue_on_error, ctx)
    except ConveyorError as exc:
        _system(state, scope, step, f"##[error]{exc}")
        outcome, outputs, continue_on_error = "failure", {}, False
    conclusion = "success" if outcome == "failure" and continue_on_error else outcome
    result = StepResult(outcome, conclusion, outputs)
    await _finished(state, scope, step, name, result)
    return result


async def _restored(
    state: JobState, scope: Scope, step: Step, completed: CompletedStep
) -> StepResult:
    """A run-once step an earlier lease of this attempt completed: not run again, whatever
    its `if:` says now; its outputs are restored, not what it wrote to env files."""
    state.reporter.log(
        step.index,
        f"Already completed (recorded under fencing token {completed.epoch});"
        " not run again (run-once).",
    )
    result = StepResult("success", "success", dict(completed.outputs))
    # An unrendered name would replace the recorded one: "" keeps it.
    name = "" if isinstance(step.name, str) and "${{" in step.name else step.display_name
    await _finished(state, scope, step, name, result, restored=True)
    return result


async def _broken(state: JobState, scope: Scope, step: Step, name: str, why: str) -> StepResult:
    """A step whose expressions could not be evaluated fails without running."""
    if scope.top_level:
        await state.reporter.step_started(step.index, step.id, name)
    _system(state, scope, step, f"##[error]{why}")
    result = StepResult("failure", "failure", {})
    await _finished(state, scope, step, name, result)
    return result


async def _finished(
    state: JobState,
    scope: Scope,
    step: Step,
    name: str,
    result: StepResult,
    *,
    restored: bool = False,
) -> None:
    if not scope.top_level:
        return
    await state.reporter.step_finished(
        StepReport(
            step.index,
            step.id,
            name,
            result.outcome,
            result.conclusion,
            result.outputs,
            restored,
        )
    )


def contexts_for(state: JobState, scope: Scope, env: Mapping[str, str]) -> dict[str, Any]:
    extra = {"action_path": scope.action_path} if scope.action_path else None
    contexts = state.contexts(env=env, steps=dict(scope.results), github_extra=extra)
    if scope.inputs is not None:
        contexts["inputs"] = dict(scope.inputs)
    return contexts


def environment_for(state: JobState, scope: Scope, ctx: Mapping[str, Any]) -> Environment:
    """Inside a composite, status functions see the composite's own steps."""
    return state.environment(ctx, status=None if scope.top_level else scope.status)


def _render_name(state: JobState, scope: Scope, step: Step, ctx: Mapping[str, Any]) -> str:
    if isinstance(step.name, str) and "${{" in step.name:
        return to_string(render_value(step.name, environment_for(state, scope, ctx)))
    return step.display_name


def _decide(state: JobState, scope: Scope, step: Step, ctx: Mapping[str, Any]) -> bool:
    """Evaluate `if:` (implicitly `success() && (...)`)."""
    node = condition(step.if_)
    return to_boolean(evaluate(node, environment_for(state, scope, ctx)))


def _flag(state: JobState, scope: Scope, raw: Any, ctx: Mapping[str, Any]) -> bool:
    if isinstance(raw, str):
        raw = render_value(raw, environment_for(state, scope, ctx))
    return to_boolean(raw)


def _system(state: JobState, scope: Scope, step: Step, line: str) -> None:
    """A line Conveyor writes about the step: shown, but not part of its output."""
    state.reporter.log(None, state.masker.mask(line))


async def _execute(
    state: JobState,
    scope: Scope,
    step: Step,
    ctx: Mapping[str, Any],
    step_env: Mapping[str, str],
) -> tuple[str, dict[str, str]]:
    if step.run is not None:
        return await _run_script(state, scope, step, ctx, step_env)
    from conveyor.runner.actions import run_action

    return await run_action(state, scope, step, ctx, step_env)


async def _run_script(
    state: JobState,
    scope: Scope,
    step: Step,
    ctx: Mapping[str, Any],
    step_env: Mapping[str, str],
) -> tuple[str, dict[str, str]]:
    environment = environment_for(state, scope, ctx)
    script = to_string(render_value(step.run, environment))
    shell_spec = step.shell or scope.defaults.shell
    if shell_spec and "${{" in shell_spec:
        shell_spec = to_string(render_value(shell_spec, environment))
    shell = resolve_shell(
        shell_spec,
        default=None if shell_spec else DEFAULT_SHELL,
        path=state.process_env(step_env).get("PATH"),
    )
    cwd = _working_directory(state, scope, step, environment)
    script_path = write_script(str(state.dirs.files), script, shell)
    extra = {"GITHUB_ACTION_PATH": scope.action_path} if scope.action_path else {}
    return await run_command(
        state, scope, step, shell.argv_for(script_path), cwd, {**extra, **step_env}, ctx
    )


def _working_directory(state: JobState, scope: Scope, step: Step, environment: Any) -> str:
    raw = step.working_directory or scope.defaults.working_directory
    if not raw:
        return state.workspace
    path = to_string(render_value(raw, environment))
    full = os.path.normpath(os.path.join(state.workspace, path))
    if not os.path.isdir(full):
        raise ConveyorError(f"working-directory {path!r} does not exist in the workspace")
    return full


async def run_command(
    state: JobState,
    scope: Scope,
    step: Step,
    argv: Sequence[str],
    cwd: str,
    step_env: Mapping[str, str],
    ctx: Mapping[str, Any],
) -> tuple[str, dict[str, str]]:
    """Run one process as a step: env files in, output lines and commands out."""
    files = workspace.step_files(state.dirs)
    index = scope.log_index if scope.log_index is not None else step.index
    env = state.process_env({**step_env, **files})
    env["CONVEYOR_IDEMPOTENCY_KEY"] = _idempotency_key(state, index, scope, step)
    env["GITHUB_ACTION"] = step.id or f"__run_{step.index}"
    unsecure = env.get("ACTIONS_ALLOW_UNSECURE_COMMANDS", "").lower() == "true"
    commands = CommandProcessor(allow_unsecure=unsecure)
    reporter, masker = state.reporter, state.masker

    def on_line(line: str) -> None:
        result = commands.feed(line)
        for secret in result.masks:
            masker.add(secret)
        if result.is_output:
            reporter.log(index, masker.mask(line))
        for message in result.messages:
            reporter.log(None, masker.mask(message))

    timeout = timeout_seconds(step.timeout_minutes, state)
    # Once the job is cancelled, the steps still chosen to run (`if: always()`) run to the end.
    cancel = None if state.cancelled else reporter.cancel
    proc = await run_process(
        argv, cwd=cwd, env=env, on_line=on_line, timeout=timeout, cancel=cancel
    )
    outputs = dict(commands.outputs)
    try:
        _apply_files(state, files, outputs)
    except EnvFileError as exc:
        _system(state, scope, step, f"##[error]{exc}")
        return "failure", outputs
    state.exported.update(commands.env)
    for entry in commands.path:
        state.path_prepends.insert(0, entry)
    state.process_groups.append(proc.pid)
    if commands.failed:
        return "failure", outputs
    if proc.cancelled:
        state.cancelled = True
        return "cancelled", outputs
    if proc.timed_out:
        _system(
            state, scope, step, f"##[error]The step timed out after {step.timeout_minutes} minutes."
        )
        return "failure", outputs
    if proc.exit_code != 0:
        _system(state, scope, step, f"##[error]Process completed with exit code {proc.exit_code}.")
        return "failure", outputs
    return "success", outputs


def _apply_files(state: JobState, files: Mapping[str, str], outputs: dict[str, str]) -> None:
    def read(name: str) -> str:
        path = files[name]
        if os.stat(path).st_size == 0:  # most steps write none: one system call, not eight
            return ""
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()

    for key, value in parse_env_file(read("GITHUB_ENV")):
        state.exported[key] = value
    for key, value in parse_env_file(read("GITHUB_OUTPUT")):
        outputs[key] = value
    for entry in read_path_file(read("GITHUB_PATH")):
        state.path_prepends.insert(0, entry)
    summary = read("GITHUB_STEP_SUMMARY")
    if summary.strip():
        state.summary.append(
            state.masker.mask(summary if summary.endswith("\n") else summary + "\n")
        )


def _idempotency_key(state: JobState, index: int, scope: Scope, step: Step) -> str:
    """Stable across automatic retries of one run attempt (not the retry count)."""
    base = state.assignment.idempotency_base or state.assignment.job_id
    where = f"{index}" if scope.top_level else f"{index}/{scope.action_path}/{step.index}"
    return hashlib.sha256(f"{base}:{where}".encode()).hexdigest()[:32]

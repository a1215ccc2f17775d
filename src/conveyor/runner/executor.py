"""Runs one job: its steps in order, in a fresh workspace, reporting as it goes.

The same executor serves `conveyor run` (in-process reporter) and the runner
agent (HTTP reporter). It holds the job's evolving state (env exported by
steps, PATH additions, masks, the steps context, the job status) in a
`JobState`; `steps.py` runs each step against it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.engine.contexts import github_env, runner_context, runner_env
from conveyor.errors import ConveyorError, ExpressionError
from conveyor.expr import Environment, render_value, to_string
from conveyor.runner import workspace
from conveyor.runner.artifacts import ArtifactStore
from conveyor.runner.assignment import JobAssignment, JobOutcome, JobReporter
from conveyor.runner.guard import MARKER_ENV
from conveyor.runner.hashfiles import hash_files
from conveyor.runner.masking import Masker
from conveyor.runner.process import kill_process_group


@dataclass
class JobState:
    """Everything a job's steps share and change."""

    assignment: JobAssignment
    dirs: workspace.JobDirs
    reporter: JobReporter
    artifacts: ArtifactStore | None
    masker: Masker
    base_env: dict[str, str]
    job_env: dict[str, str]
    """workflow env, then job env: what `env` holds before any step runs."""
    exported: dict[str, str] = field(default_factory=dict)
    """What steps wrote to GITHUB_ENV (or ::set-env): overrides job env."""
    path_prepends: list[str] = field(default_factory=list)
    """GITHUB_PATH entries, newest first."""
    status: str = "success"
    cancelled: bool = False
    summary: list[str] = field(default_factory=list)
    """Each step's GITHUB_STEP_SUMMARY, masked."""
    process_groups: list[int] = field(default_factory=list)
    """Steps' process groups: what they left running is killed when the job ends."""

    @property
    def workspace(self) -> str:
        return str(self.dirs.workspace)

    def contexts(
        self,
        *,
        env: Mapping[str, str],
        steps: Mapping[str, Any],
        inputs: Mapping[str, Any] | None = None,
        github_extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The expression contexts one step (or one of its keys) is evaluated in."""
        a = self.assignment
        contexts = dict(a.contexts)
        if github_extra:
            contexts["github"] = {**contexts.get("github", {}), **github_extra}
        contexts.update(
            env=dict(env),
            steps=steps,
            matrix=dict(a.matrix or {}),
            secrets=dict(a.secrets),
            job={"status": self.status, "container": {}, "services": {}},
            runner=self.runner,
        )
        if inputs is not None:
            contexts["inputs"] = dict(inputs)
        return contexts

    def environment(self, contexts: Mapping[str, Any], *, status: str | None = None) -> Environment:
        """An expression environment; `status` is a composite's own (default: the job's)."""
        return Environment(
            contexts=contexts,
            status="cancelled" if self.cancelled else (status or self.status),
            cancelled=self.cancelled,
            hash_files=lambda patterns: hash_files(self.workspace, patterns),
        )

    @functools.cached_property
    def runner(self) -> dict[str, Any]:
        return runner_context(str(self.dirs.temp), str(self.dirs.tool_cache))

    def env_context(self) -> dict[str, str]:
        return {**self.job_env, **self.exported}

    def process_env(self, step_env: Mapping[str, str]) -> dict[str, str]:
        """The environment a step's process starts with (PATH additions in front)."""
        env = {**self.base_env, **self.job_env, **self.exported, **step_env}
        if self.path_prepends:
            env["PATH"] = os.pathsep.join([*self.path_prepends, env.get("PATH", "")])
        return env

    def fail(self) -> None:
        if self.status == "success":
            self.status = "failure"


class JobExecutor:
    """Runs one `JobAssignment` to its end and returns how it ended.

    Each job gets a directory tree from `slots`, for the time it runs. With a
    `marker`, its processes carry it in their environment, for the lease guard
    to find them, and the tree goes back under it (see workspace.Slots).
    """

    def __init__(
        self,
        *,
        slots: workspace.Slots,
        base_env: Mapping[str, str] | None = None,
        artifacts: ArtifactStore | None = None,
        marker: str = "",
    ) -> None:
        self._slots = slots
        self._base_env = dict(os.environ if base_env is None else base_env)
        if marker:
            self._base_env[MARKER_ENV] = marker
        self._marker = marker
        self._artifacts = artifacts

    async def run(self, assignment: JobAssignment, reporter: JobReporter) -> JobOutcome:
        from conveyor.runner.steps import Scope, run_steps

        repository = str(assignment.contexts.get("github", {}).get("repository", ""))
        dirs = self._slots.acquire(assignment.source_dir, bind=assignment.bind, name=repository)
        state: JobState | None = None
        try:
            state = self._initial_state(assignment, dirs, reporter)
            timeout = timeout_seconds(assignment.job.timeout_minutes, state)
            scope = Scope(steps=assignment.job.steps, defaults=assignment.job.defaults)
            try:
                async with asyncio.timeout(timeout):  # no task of its own, as wait_for makes
                    await run_steps(state, scope)
            except TimeoutError:
                minutes = assignment.job.timeout_minutes
                reporter.log(None, f"##[error]The job exceeded its timeout of {minutes} minutes.")
                await reporter.flush()
                return JobOutcome("failure", {}, reason="timed out")
            outputs = self._outputs(state, scope.results)
            await reporter.flush()
            conclusion = "cancelled" if state.cancelled else state.status
            return JobOutcome(conclusion, outputs, summary="".join(state.summary))
        except ConveyorError as exc:
            reporter.log(None, f"##[error]{exc}")
            await reporter.flush()
            return JobOutcome("failure", {}, reason=str(exc))
        finally:
            for pgid in state.process_groups if state else ():
                kill_process_group(pgid)
            self._slots.release(dirs, self._marker)

    def _initial_state(
        self, a: JobAssignment, dirs: workspace.JobDirs, reporter: JobReporter
    ) -> JobState:
        masker = Masker()
        for value in a.secrets.values():
            masker.add(value)
        github = {**a.contexts.get("github", {}), "workspace": str(dirs.workspace), "job": a.key}
        contexts = {**a.contexts, "github": github}
        runner = runner_context(str(dirs.temp), str(dirs.tool_cache))
        base_env = {
            **self._base_env,
            **github_env(github),
            **runner_env(runner),
            "RUNNER_WORKSPACE": str(dirs.workspace.parent),
            "CONVEYOR_FENCING_TOKEN": str(a.epoch),
        }
        event_path = os.path.join(dirs.files, "event.json")
        workspace.rewrite(event_path, json.dumps(github.get("event", {})).encode())
        base_env["GITHUB_EVENT_PATH"] = event_path
        github["event_path"] = event_path
        state = JobState(
            assignment=replace(a, contexts=contexts),
            dirs=dirs,
            reporter=reporter,
            artifacts=self._artifacts,
            masker=masker,
            base_env=base_env,
            job_env={},
        )
        # Workflow env is evaluated first and is visible to the job's env.
        wf_env = render_env(a.workflow.env, state.environment(state.contexts(env={}, steps={})))
        state.job_env = wf_env
        job_env = render_env(a.job.env, state.environment(state.contexts(env=wf_env, steps={})))
        state.job_env = {**wf_env, **job_env}
        return state

    def _outputs(self, state: JobState, steps: Mapping[str, Any]) -> dict[str, str]:
        contexts = state.contexts(env=state.env_context(), steps=steps)
        rendered = render_value(dict(state.assignment.job.outputs), state.environment(contexts))
        out: dict[str, str] = {}
        for key, value in rendered.items():
            text = "" if value is None else to_string(value)
            out[str(key)] = text
        return out


def render_env(raw: Any, environment: Environment) -> dict[str, str]:
    """Render an `env:` map (or an expression yielding one) into strings."""
    if not raw:
        return {}
    value = render_value(raw if isinstance(raw, str) else dict(raw), environment)
    if not isinstance(value, Mapping):
        raise ExpressionError(f"env must be a mapping, got {to_string(value)!r}")
    return {str(k): to_string(v) for k, v in value.items()}


def timeout_seconds(raw: Any, state: JobState) -> float | None:
    """A `timeout-minutes` value (maybe an expression) in seconds; None for none."""
    if raw is None:
        return None
    if isinstance(raw, str):
        contexts = state.contexts(env=state.env_context(), steps={})
        raw = render_value(raw, state.environment(contexts))
    try:
        minutes = float(raw)
    except (TypeError, ValueError):
        raise ConveyorError(f"timeout-minutes must be a number, got {raw!r}") from None
    return minutes * 60 if minutes > 0 else None

"""The run-wide expression contexts: `github`, `runner`, `strategy`, `needs`, `job`.

Pure functions of the event and the run's identity; the executor adds the
step-level contexts (env, steps, inputs of composites) on top.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunIdentity:
    """What identifies a run to the steps it executes."""

    run_id: str
    run_number: int
    attempt: int
    event_name: str
    payload: Mapping[str, Any]
    repository: str
    workspace: str
    sha: str = ""
    ref: str = ""
    actor: str = "conveyor"
    server_url: str = "http://localhost"
    workflow: str = ""
    workflow_ref: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def ref_for_event(event_name: str, payload: Mapping[str, Any], default_ref: str) -> str:
    """The `github.ref` GitHub reports for an event."""
    if event_name in ("pull_request", "pull_request_target"):
        number = _get(payload, "pull_request", "number") or payload.get("number")
        if event_name == "pull_request" and number is not None:
            return f"refs/pull/{number}/merge"
        base = _get(payload, "pull_request", "base", "ref")
        if isinstance(base, str) and base:
            return base if base.startswith("refs/") else f"refs/heads/{base}"
    ref = payload.get("ref")
    if isinstance(ref, str) and ref:
        return ref if ref.startswith("refs/") else f"refs/heads/{ref}"
    return default_ref


def github_context(ident: RunIdentity, *, job: str = "", action_path: str = "") -> dict[str, Any]:
    """The `github` context as GitHub documents it."""
    ref = ident.ref
    ref_type, ref_name = "branch", ref
    if ref.startswith("refs/heads/"):
        ref_name = ref[len("refs/heads/") :]
    elif ref.startswith("refs/tags/"):
        ref_type, ref_name = "tag", ref[len("refs/tags/") :]
    elif ref.startswith("refs/pull/"):
        ref_name = ref[len("refs/") :]
    head_ref = _get(ident.payload, "pull_request", "head", "ref") or ""
    base_ref = _get(ident.payload, "pull_request", "base", "ref") or ""
    owner = ident.repository.split("/", 1)[0] if "/" in ident.repository else ident.repository
    ctx: dict[str, Any] = {
        "action": "",
        "action_path": action_path,
        "action_ref": "",
        "action_repository": "",
        "actor": ident.actor,
        "triggering_actor": ident.actor,
        "api_url": f"{ident.server_url}/api/v3",
        "base_ref": base_ref if ident.event_name.startswith("pull_request") else "",
        "head_ref": head_ref if ident.event_name.startswith("pull_request") else "",
        "event": dict(ident.payload),
        "event_name": ident.event_name,
        "event_path": "",
        "graphql_url": f"{ident.server_url}/api/graphql",
        "job": job,
        "ref": ref,
        "ref_name": ref_name,
        "ref_protected": False,
        "ref_type": ref_type,
        "repository": ident.repository,
        "repository_owner": owner,
        "repositoryUrl": f"{ident.server_url}/{ident.repository}.git",
        "retention_days": "90",
        "run_id": ident.run_id,
        "run_number": str(ident.run_number),
        "run_attempt": str(ident.attempt),
        "secret_source": "None",
        "server_url": ident.server_url,
        "sha": ident.sha,
        "token": "",
        "workflow": ident.workflow,
        "workflow_ref": ident.workflow_ref,
        "workspace": ident.workspace,
    }
    ctx.update(ident.extra)
    return ctx


def github_env(github: Mapping[str, Any]) -> dict[str, str]:
    """The GITHUB_* variables every step sees, derived from the `github` context."""
    names = {
        "GITHUB_ACTOR": "actor",
        "GITHUB_TRIGGERING_ACTOR": "triggering_actor",
        "GITHUB_API_URL": "api_url",
        "GITHUB_BASE_REF": "base_ref",
        "GITHUB_HEAD_REF": "head_ref",
        "GITHUB_EVENT_NAME": "event_name",
        "GITHUB_GRAPHQL_URL": "graphql_url",
        "GITHUB_JOB": "job",
        "GITHUB_REF": "ref",
        "GITHUB_REF_NAME": "ref_name",
        "GITHUB_REF_TYPE": "ref_type",
        "GITHUB_REPOSITORY": "repository",
        "GITHUB_REPOSITORY_OWNER": "repository_owner",
        "GITHUB_RUN_ID": "run_id",
        "GITHUB_RUN_NUMBER": "run_number",
        "GITHUB_RUN_ATTEMPT": "run_attempt",
        "GITHUB_SERVER_URL": "server_url",
        "GITHUB_SHA": "sha",
        "GITHUB_WORKFLOW": "workflow",
        "GITHUB_WORKFLOW_REF": "workflow_ref",
        "GITHUB_WORKSPACE": "workspace",
    }
    env = {var: str(github.get(key) or "") for var, key in names.items()}
    env.update({"CI": "true", "GITHUB_ACTIONS": "true"})
    return env


def runner_context(temp: str, tool_cache: str, name: str = "conveyor") -> dict[str, Any]:
    """The `runner` context of this machine."""
    arch = {"x86_64": "X64", "amd64": "X64", "aarch64": "ARM64", "arm64": "ARM64"}
    machine = os.uname().machine.lower() if hasattr(os, "uname") else ""
    return {
        "name": name,
        "os": "Linux" if os.name == "posix" else "Windows",
        "arch": arch.get(machine, machine.upper()),
        "temp": temp,
        "tool_cache": tool_cache,
        "debug": "",
        "environment": "self-hosted",
    }


def runner_env(runner: Mapping[str, Any]) -> dict[str, str]:
    return {
        "RUNNER_NAME": str(runner["name"]),
        "RUNNER_OS": str(runner["os"]),
        "RUNNER_ARCH": str(runner["arch"]),
        "RUNNER_TEMP": str(runner["temp"]),
        "RUNNER_TOOL_CACHE": str(runner["tool_cache"]),
        "RUNNER_ENVIRONMENT": str(runner["environment"]),
    }


def strategy_context(
    fail_fast: bool, max_parallel: int | None, index: int, total: int
) -> dict[str, Any]:
    return {
        "fail-fast": fail_fast,
        "job-index": index,
        "job-total": total,
        "max-parallel": max_parallel if max_parallel is not None else total,
    }


def needs_context(
    needs: Sequence[str], results: Mapping[str, str], outputs: Mapping[str, Mapping[str, str]]
) -> dict[str, Any]:
    """`needs.<id>.result` and `needs.<id>.outputs` for a job's direct needs."""
    return {
        key: {"result": results.get(key, "skipped"), "outputs": dict(outputs.get(key, {}))}
        for key in needs
    }


def _get(data: Mapping[str, Any], *path: str) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value

"""Reading a run's workflows and describing its event, for `RunService`.

A run's workflow files come from its repository at the run's commit (every
file under .github/workflows, so reusable workflows resolve), or from the YAML
registered through the API; they are parsed and planned once per run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.engine.contexts import RunIdentity, github_context
from conveyor.engine.records import RunRecord
from conveyor.engine.runplan import PlannedJob, plan_run
from conveyor.engine.sources import RepositoryMirror, SourceError
from conveyor.errors import Diagnostic, Span, WorkflowError
from conveyor.workflow import parse_workflow
from conveyor.workflow.model import Workflow
from conveyor.workflow.triggers import Event


@dataclass(frozen=True)
class LoadedRun:
    """A run's workflows, parsed: the top one, its plan, and every source by path."""

    workflow: Workflow
    plan: list[PlannedJob]
    sources: Mapping[str, str]
    checkout: Mapping[str, str] | None
    repository: str


async def load_run_sources(
    mirror: RepositoryMirror, workflow: Any, repo: Any, sha: str
) -> LoadedRun:
    """Read and plan a run's workflows: from `repo` at `sha`, or the registered source."""
    sources: dict[str, str] = {}
    if repo is not None:
        try:
            for path in await mirror.workflow_files(repo.url, sha):
                sources[path] = await mirror.show(repo.url, sha, path)
            if workflow.path not in sources:
                sources[workflow.path] = await mirror.show(repo.url, sha, workflow.path)
        except SourceError as exc:
            raise WorkflowError(
                [Diagnostic(Span(workflow.path, 1, 1), "source", str(exc))]
            ) from None
    else:
        sources[workflow.path] = workflow.source
    models: dict[str, Workflow] = {}

    def load(path: str) -> Workflow:
        path = os.path.normpath(path)
        if path not in sources:
            raise WorkflowError(
                [
                    Diagnostic(
                        Span(workflow.path, 1, 1),
                        "reusable-workflow",
                        f"{path}: no such workflow in the repository",
                    )
                ]
            )
        if path not in models:
            models[path] = parse_workflow(path, sources[path], path)
        return models[path]

    top = load(workflow.path)
    plan = plan_run(top, load)
    checkout = {"url": repo.url, "sha": sha, "ref": ""} if repo is not None else None
    name = (
        repo.name
        if repo is not None
        else f"local/{os.path.splitext(os.path.basename(workflow.path))[0]}"
    )
    return LoadedRun(top, plan, sources, checkout, name)


def github_of(run: RunRecord, loaded: LoadedRun, server_url: str) -> dict[str, Any]:
    """The `github` context of a run of the service."""
    identity = RunIdentity(
        run_id=run.id,
        run_number=run.run_number,
        attempt=run.attempt,
        event_name=run.event,
        payload=run.payload,
        repository=loaded.repository,
        workspace="",
        sha=run.sha or "",
        ref=run.ref or "",
        actor=str((run.payload.get("sender") or {}).get("login") or "conveyor"),
        server_url=server_url,
        workflow=loaded.workflow.display_name,
        workflow_ref=f"{loaded.repository}/{run.workflow_path}@{run.ref or ''}",
    )
    return github_context(identity)


def event_of(name: str, payload: Mapping[str, Any]) -> Event:
    if name == "push":
        return Event.from_push(payload)
    if name in ("pull_request", "pull_request_target"):
        return Event.from_pull_request(payload, name=name)
    return Event(name, payload)


def event_sha(name: str, payload: Mapping[str, Any]) -> str:
    if name == "push":
        after = payload.get("after")
        return after if isinstance(after, str) and after.strip("0") else ""
    pr = payload.get("pull_request")
    if isinstance(pr, Mapping):
        head = pr.get("head")
        if isinstance(head, Mapping) and isinstance(head.get("sha"), str):
            return str(head["sha"])
    return ""

"""Workflows: register (YAML body or a file of a repository), list, get, enable, delete, dispatch.

A workflow is validated when registered: a file with problems is refused
with 422 and every diagnostic as `file:line:col: message`. Dispatch types
the inputs as the workflow's `workflow_dispatch` trigger declares them and
answers 202 with the new run's id; its `Idempotency-Key` also reaches the
store, so a retried dispatch creates one run.
"""

from __future__ import annotations

import contextlib
import posixpath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from conveyor.api.deps import Invalid, Principal, admin, services
from conveyor.api.idempotency import IdempotentRoute, idempotency_key
from conveyor.api.pages import Cursor, Limit, page
from conveyor.api.routes import API
from conveyor.api.schemas import (
    DispatchIn,
    EnabledIn,
    RunIdOut,
    WorkflowDetailOut,
    WorkflowIn,
    WorkflowOut,
    WorkflowsOut,
    workflow_detail_out,
    workflow_out,
)
from conveyor.errors import Conflict, StaleWorkflow
from conveyor.workflow import load_workflow, parse_workflow
from conveyor.workflow.triggers import dispatch_inputs

router = APIRouter(prefix=f"{API}/workflows", tags=["workflows"], route_class=IdempotentRoute)

Admin = Annotated[Principal, Depends(admin)]
WORKFLOW_CACHE_SIZE = 10_000
"""Workflows dispatch keeps as last read (each dispatch checks its copy is current)."""


def check_path(path: str) -> str:
    """A workflow path: relative, inside the repository, a YAML file."""
    normal = posixpath.normpath(path)
    if (
        path.startswith("/")
        or normal == ".."
        or normal.startswith("../")
        or "\x00" in path
        or "\\" in path
    ):
        raise Invalid(f"workflow path {path!r} must be a relative path inside the repository")
    if not normal.endswith((".yml", ".yaml")):
        raise Invalid(f"workflow path {path!r} must name a .yml or .yaml file")
    return normal


@router.post("", status_code=201)
async def register(body: WorkflowIn, request: Request, principal: Admin) -> WorkflowDetailOut:
    """Register a workflow from its YAML (`source`) or from `path` in a registered repository."""
    svc = services(request)
    path = check_path(body.path)
    repository = None
    if body.repository_id is not None:
        repository = await svc.store.get_repository(principal.tenant_id, body.repository_id)
    source = body.source
    if source is None:
        if repository is None:
            raise Invalid("give the workflow's YAML as `source`, or a `repository_id` to read it")
        source = await svc.read_workflow(repository, path)
    model = load_workflow(path, text=source)
    record = await svc.store.register_workflow(
        principal.tenant_id, path, source, model.display_name, repository_id=body.repository_id
    )
    return workflow_detail_out(record)


@router.get("")
async def list_workflows(
    request: Request,
    principal: Admin,
    repository_id: str | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> WorkflowsOut:
    """One page of the tenant's workflows by id, only `repository_id`'s if given; pass
    `next_cursor` back as `cursor` for the next.

    The cursor is only compared with ids, not looked up: a workflow deleted
    meanwhile does not end the walk.
    """
    store = services(request).store
    found, next_cursor = await page(
        lambda after, size: store.list_workflows(
            principal.tenant_id, after=after, limit=size, repository_id=repository_id
        ),
        cursor,
        limit,
        lambda workflow: workflow.id,
    )
    return WorkflowsOut(items=[workflow_out(r) for r in found], next_cursor=next_cursor)


@router.get("/{workflow_id}")
async def get(workflow_id: str, request: Request, principal: Admin) -> WorkflowDetailOut:
    record = await services(request).store.get_workflow(principal.tenant_id, workflow_id)
    return workflow_detail_out(record)


@router.post("/{workflow_id}/enable")
async def enable(workflow_id: str, request: Request, principal: Admin) -> WorkflowOut:
    return await _set_enabled(request, principal, workflow_id, True)


@router.post("/{workflow_id}/disable")
async def disable(workflow_id: str, request: Request, principal: Admin) -> WorkflowOut:
    return await _set_enabled(request, principal, workflow_id, False)


@router.patch("/{workflow_id}")
async def update(
    workflow_id: str, body: EnabledIn, request: Request, principal: Admin
) -> WorkflowOut:
    """`{"enabled": bool}`: the seed's spelling of enable/disable."""
    return await _set_enabled(request, principal, workflow_id, body.enabled)


async def _set_enabled(
    request: Request, principal: Principal, workflow_id: str, enabled: bool
) -> WorkflowOut:
    store = services(request).store
    record = await store.set_workflow_enabled(principal.tenant_id, workflow_id, enabled)
    return workflow_out(record)


@router.delete("/{workflow_id}", status_code=204)
async def delete(workflow_id: str, request: Request, principal: Admin) -> Response:
    await services(request).store.delete_workflow(principal.tenant_id, workflow_id)
    return Response(status_code=204)


@router.post("/{workflow_id}/dispatch", status_code=202)
@router.post("/{workflow_id}/dispatches", status_code=202, include_in_schema=False)
async def dispatch(
    workflow_id: str, body: DispatchIn, request: Request, principal: Admin
) -> RunIdOut:
    """Start a run by hand (`workflow_dispatch`), with inputs typed as the workflow declares.

    The workflow as this server last read it is used, and the run is created
    only if it is still so (enabled, same `updated_at`): else it is read again.
    """
    svc = services(request)
    known: dict[tuple[str, str], Any] = request.app.state.workflows
    cached = known.get((principal.tenant_id, workflow_id))
    if cached is not None:  # it may only say yes: any refusal comes from a fresh read
        try:
            inputs: dict[str, Any] | None = _dispatch_inputs(cached, body)
        except Exception:  # whatever it is (disabled, inputs of an older version…): read again
            inputs = None
        if inputs is not None:
            with contextlib.suppress(StaleWorkflow):  # nothing was written: read it again
                return await _start(request, principal, cached, body, inputs)
    record = await svc.store.get_workflow(principal.tenant_id, workflow_id)
    if len(known) >= WORKFLOW_CACHE_SIZE:
        known.clear()
    known[(principal.tenant_id, workflow_id)] = record
    return await _start(request, principal, record, body, _dispatch_inputs(record, body))


def _dispatch_inputs(record: Any, body: DispatchIn) -> dict[str, Any]:
    """The dispatch's inputs, typed as the workflow declares them; Conflict or Invalid when
    the workflow cannot be dispatched so."""
    if not record.enabled:
        raise Conflict(f"workflow {record.id!r} is disabled")
    trigger = parse_workflow(record.path, record.source).on.get("workflow_dispatch")
    if trigger is None:
        raise Invalid(f"workflow {record.path!r} has no workflow_dispatch trigger")
    return dispatch_inputs(trigger, body.inputs)


async def _start(
    request: Request, principal: Principal, record: Any, body: DispatchIn, inputs: dict[str, Any]
) -> RunIdOut:
    """A run of the workflow `record`, if the store still has it so (else StaleWorkflow,
    before anything is written)."""
    key = idempotency_key(request)
    payload: dict[str, Any] = {"inputs": inputs, "ref": body.ref, "workflow": record.path}
    run = await services(request).start_run(
        principal.tenant_id,
        record,
        "workflow_dispatch",
        payload,
        inputs,
        ref=body.ref,
        # Scoped to this workflow: the store dedupes runs by key across the whole tenant.
        idempotency_key=f"dispatch:{record.id}:{key}" if key else None,
        as_read=True,
    )
    return RunIdOut(run_id=run.id)

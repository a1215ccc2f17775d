"""Runs: list (filtered, newest first, by cursor), get, cancel, re-run; a run's jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from conveyor.api.deps import Principal, admin, services
from conveyor.api.idempotency import IdempotentRoute
from conveyor.api.pages import Cursor, Limit, page
from conveyor.api.routes import API
from conveyor.api.schemas import JobsOut, RunIdOut, RunOut, RunsOut, job_out, run_out
from conveyor.engine.states import RunStatus

router = APIRouter(prefix=f"{API}/runs", tags=["runs"], route_class=IdempotentRoute)

Admin = Annotated[Principal, Depends(admin)]


@router.get("")
async def list_runs(
    request: Request,
    principal: Admin,
    status: RunStatus | None = None,
    branch: str | None = None,
    workflow_id: str | None = None,
    event: str | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> RunsOut:
    """One page of runs, newest first; pass `next_cursor` back as `cursor` for the next."""
    store = services(request).store
    runs, next_cursor = await page(
        lambda after, size: store.list_runs(
            principal.tenant_id,
            status=status,
            branch=branch,
            workflow_id=workflow_id,
            event=event,
            after=after,
            limit=size,
        ),
        cursor,
        limit,
        lambda run: run.id,
    )
    return RunsOut(items=[run_out(r) for r in runs], next_cursor=next_cursor)


@router.get("/{run_id}")
async def get(run_id: str, request: Request, principal: Admin) -> RunOut:
    run = await services(request).store.get_run(run_id, tenant_id=principal.tenant_id)
    return run_out(run)


@router.post("/{run_id}/cancel", status_code=202)
async def cancel(run_id: str, request: Request, principal: Admin) -> RunOut:
    """Cancel queued jobs now and ask running ones to stop (they learn it by heartbeat)."""
    svc = services(request)
    await svc.store.get_run(run_id, tenant_id=principal.tenant_id)
    await svc.store.cancel_run(run_id)
    return run_out(await svc.store.get_run(run_id, tenant_id=principal.tenant_id))


@router.post("/{run_id}/rerun", status_code=202)
async def rerun(run_id: str, request: Request, principal: Admin) -> RunIdOut:
    """A new attempt of every job of the run."""
    return await _rerun(request, principal, run_id, failed_only=False)


@router.post("/{run_id}/rerun-failed", status_code=202)
async def rerun_failed(run_id: str, request: Request, principal: Admin) -> RunIdOut:
    """A new attempt of the run's failed jobs and the jobs that need them.

    The jobs that succeeded are carried over with their outputs, not run again.
    409 while the run has not ended, or when none of its jobs failed.
    """
    return await _rerun(request, principal, run_id, failed_only=True)


async def _rerun(
    request: Request, principal: Principal, run_id: str, failed_only: bool
) -> RunIdOut:
    svc = services(request)
    run = await svc.store.get_run(run_id, tenant_id=principal.tenant_id)
    created = await svc.rerun(run, failed_only)
    return RunIdOut(run_id=created.id)


@router.get("/{run_id}/jobs")
async def jobs(
    run_id: str,
    request: Request,
    principal: Admin,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> JobsOut:
    """One page of the run's jobs in the workflow's order, a job's matrix instances together;
    pass `next_cursor` back as `cursor` for the next."""
    store = services(request).store
    run = await store.get_run(run_id, tenant_id=principal.tenant_id)
    found, next_cursor = await page(
        lambda after, size: store.list_jobs_page(run.id, after=after, limit=size),
        cursor,
        limit,
        lambda job: job.id,
    )
    return JobsOut(items=[job_out(j) for j in found], next_cursor=next_cursor)

"""Runs: list (filtered, newest first, by cursor), get, cancel, re-run; a run's jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from conveyor.api.deps import Principal, admin, services
from conveyor.api.idempotency import IdempotentRoute
from conveyor.api.routes import API
from conveyor.api.schemas import JobsOut, RunIdOut, RunOut, RunsOut, job_out, run_out
from conveyor.engine.records import JobRecord
from conveyor.engine.states import RunStatus

router = APIRouter(prefix=f"{API}/runs", tags=["runs"], route_class=IdempotentRoute)

Admin = Annotated[Principal, Depends(admin)]
Limit = Annotated[int, Query(ge=1, le=200)]


@router.get("")
async def list_runs(
    request: Request,
    principal: Admin,
    status: RunStatus | None = None,
    branch: str | None = None,
    workflow_id: str | None = None,
    event: str | None = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> RunsOut:
    """One page of runs, newest first; pass `next_cursor` back as `cursor` for the next."""
    found = await services(request).store.list_runs(
        principal.tenant_id,
        status=status,
        branch=branch,
        workflow_id=workflow_id,
        event=event,
        after=cursor,
        limit=limit + 1,
    )
    page = found[:limit]
    next_cursor = page[-1].id if len(found) > limit else None
    return RunsOut(items=[run_out(r) for r in page], next_cursor=next_cursor)


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
async def jobs(run_id: str, request: Request, principal: Admin) -> JobsOut:
    """The run's jobs in the workflow's order, a job's matrix instances together."""
    store = services(request).store
    run = await store.get_run(run_id, tenant_id=principal.tenant_id)
    return JobsOut(items=[job_out(j) for j in _grouped(await store.list_jobs(run.id))])


def _grouped(jobs: list[JobRecord]) -> list[JobRecord]:
    """Jobs in creation order, but each key's later rows (the matrix instances made when
    it was queued) moved up to its first: a stable sort by the key's first position."""
    first: dict[str, int] = {}
    for n, job in enumerate(jobs):
        first.setdefault(job.key, n)
    return sorted(jobs, key=lambda job: first[job.key])

"""Jobs: one job with its steps (a run's jobs are listed under `/runs/{id}/jobs`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from conveyor.api.deps import Principal, admin, job_of_tenant, services
from conveyor.api.routes import API
from conveyor.api.schemas import JobDetailOut, job_detail_out

router = APIRouter(prefix=f"{API}/jobs", tags=["jobs"])


@router.get("/{job_id}")
async def get(
    job_id: str, request: Request, principal: Annotated[Principal, Depends(admin)]
) -> JobDetailOut:
    store = services(request).store
    job = await job_of_tenant(store, principal, job_id)
    return job_detail_out(job, await store.list_steps(job.id))

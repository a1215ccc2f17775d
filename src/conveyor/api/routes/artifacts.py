"""Artifacts: a runner uploads a tar per name under its lease; runners and admins read them.

An upload streams to `<data_dir>/artifacts/<run_id>/` under a temporary
name, counting bytes against `max_artifact_bytes` (413 past it). The archive
is then read through: every member must be a plain file or directory with a
relative name and no `..` (422 otherwise). Only then is it recorded
(`Store.add_artifact`, fenced by the lease in the write itself: 409
`lease_lost` once the epoch no longer holds it) and moved to
`<job_id>/<epoch>/<name>.tar`, a path no other accepted upload shares. A
name the run already has is a 409 `conflict`, unless the same job uploaded
it under an earlier epoch (a retry after its runner was lost): the retry's
upload replaces it, and the earlier execution's file is removed. The lease is also
checked before the body is read, so a stale runner is refused early.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tarfile
import tempfile
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from conveyor.api.deps import (
    Invalid,
    Principal,
    Services,
    TooLarge,
    admin,
    admin_or_runner,
    job_of_tenant,
    runner,
    services,
)
from conveyor.api.pages import Cursor, Limit, page
from conveyor.api.routes import API
from conveyor.api.schemas import ArtifactOut, ArtifactsOut, ArtifactsPageOut, artifact_out
from conveyor.engine.records import JobRecord
from conveyor.engine.states import LEASED
from conveyor.errors import LeaseLost, NotFound

router = APIRouter(prefix=API, tags=["artifacts"])

MAX_NAME = 255
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f"*:<>?|\\/]')
_TAR = "application/x-tar"


def check_name(name: str) -> str:
    """An artifact name as GitHub allows it: no separators, wildcards or control characters."""
    if not name.strip() or len(name) > MAX_NAME or name in (".", ".."):
        raise Invalid(f"artifact name {name!r} must be 1 to {MAX_NAME} characters, not . or ..")
    if _FORBIDDEN.search(name):
        raise Invalid(
            f'artifact name {name!r} may not contain " : < > | * ? \\ / or control characters'
        )
    return name


def check_archive(path: str) -> None:
    """Every member of the tar at `path` is a file or directory with a plain relative name."""
    try:
        with tarfile.open(path, "r:") as archive:
            for member in archive:
                problem = _member_problem(member)
                if problem:
                    raise Invalid(f"artifact member {member.name!r}: {problem}")
    except (tarfile.TarError, EOFError) as exc:
        raise Invalid(f"artifact is not a tar archive: {exc}") from None


def _member_problem(member: tarfile.TarInfo) -> str | None:
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute paths are not allowed"
    if ".." in parts:
        return "'..' is not allowed in member names"
    if not name.strip("/") or "\x00" in name:
        return "empty member name"
    if not (member.isreg() or member.isdir()):
        return "only regular files and directories are allowed (no links or devices)"
    return None


async def _lease_held(svc: Services, principal: Principal, job_id: str, epoch: int) -> JobRecord:
    job = await job_of_tenant(svc.store, principal, job_id)
    if (
        job.lease_owner != principal.runner_id
        or job.lease_epoch != epoch
        or job.status not in LEASED
    ):
        raise LeaseLost(f"job {job_id!r} is not leased under epoch {epoch}")
    return job


@router.put("/jobs/{job_id}/artifacts/{name:path}", status_code=201)
async def upload(
    job_id: str,
    name: str,
    epoch: Annotated[int, Query(ge=0)],
    request: Request,
    principal: Annotated[Principal, Depends(runner)],
) -> ArtifactOut:
    """Store the tar stream in the body as the run's artifact `name`."""
    check_name(name)
    svc = services(request)
    job = await _lease_held(svc, principal, job_id, epoch)
    limit = svc.settings.max_artifact_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"artifact is larger than {limit} bytes")
    directory = os.path.join(svc.settings.data_dir, "artifacts", job.run_id)
    os.makedirs(directory, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".upload-", suffix=".tar")
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"artifact is larger than {limit} bytes")
                out.write(chunk)
        await asyncio.to_thread(check_archive, temp)
        final = os.path.join(directory, job.id, str(epoch), name + ".tar")
        replaced = await svc.store.add_artifact(job.id, epoch, name, size, final)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(temp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    if replaced is not None and replaced != final:
        _remove_replaced(replaced)
    return ArtifactOut(name=name, size=size)


def _remove_replaced(path: str) -> None:
    """Delete an earlier execution's file, and its directory once that is empty."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    with contextlib.suppress(OSError):  # not empty: that execution uploaded other names
        os.rmdir(os.path.dirname(path))


@router.get("/jobs/{job_id}/artifacts")
async def list_for_job(
    job_id: str, request: Request, principal: Annotated[Principal, Depends(admin_or_runner)]
) -> ArtifactsOut:
    """Every artifact of the job's run, by name, on one page.

    The runner's list (`download-artifact` reads it whole): not paged, so that
    runners that do not follow a cursor still see every artifact.
    """
    store = services(request).store
    job = await job_of_tenant(store, principal, job_id)
    records = await store.list_artifacts(job.run_id)
    return ArtifactsOut(artifacts=[artifact_out(r) for r in records])


@router.get("/jobs/{job_id}/artifacts/{name:path}", response_class=FileResponse)
async def download_for_job(
    job_id: str,
    name: str,
    request: Request,
    principal: Annotated[Principal, Depends(admin_or_runner)],
) -> FileResponse:
    """One artifact of the job's run, as the tar that was uploaded."""
    store = services(request).store
    job = await job_of_tenant(store, principal, job_id)
    return await _file(request, job.run_id, check_name(name))


@router.get("/runs/{run_id}/artifacts")
async def list_for_run(
    run_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(admin)],
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ArtifactsPageOut:
    """One page of the run's artifacts by name; pass `next_cursor` back as `cursor` for the
    next."""
    store = services(request).store
    run = await store.get_run(run_id, tenant_id=principal.tenant_id)
    found, next_cursor = await page(
        lambda after, size: store.list_artifacts(run.id, after=after, limit=size),
        cursor,
        limit,
        lambda artifact: artifact.name,
    )
    return ArtifactsPageOut(items=[artifact_out(r) for r in found], next_cursor=next_cursor)


@router.get("/runs/{run_id}/artifacts/{name:path}", response_class=FileResponse)
async def download_for_run(
    run_id: str, name: str, request: Request, principal: Annotated[Principal, Depends(admin)]
) -> FileResponse:
    run = await services(request).store.get_run(run_id, tenant_id=principal.tenant_id)
    return await _file(request, run.id, check_name(name))


async def _file(request: Request, run_id: str, name: str) -> FileResponse:
    record = await services(request).store.get_artifact(run_id, name)
    if not os.path.isfile(record.path):
        raise NotFound(f"artifact {name!r} has no stored file")
    return FileResponse(record.path, media_type=_TAR, filename=f"{name}.tar")

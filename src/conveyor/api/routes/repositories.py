"""Repositories: register a git repository (a local path or a URL git can fetch), list, get.

A registered repository is what webhooks name (`repository.full_name`) and
where repository-backed workflows are read from, at the event's commit.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from conveyor.api.deps import Invalid, Principal, admin, services
from conveyor.api.idempotency import IdempotentRoute
from conveyor.api.pages import Cursor, Limit, page
from conveyor.api.routes import API
from conveyor.api.schemas import (
    RepositoriesOut,
    RepositoryIn,
    RepositoryOut,
    repository_out,
)

router = APIRouter(prefix=f"{API}/repositories", tags=["repositories"], route_class=IdempotentRoute)

Admin = Annotated[Principal, Depends(admin)]


@router.post("", status_code=201)
async def register(body: RepositoryIn, request: Request, principal: Admin) -> RepositoryOut:
    if "\x00" in body.url or body.url.startswith("-"):
        # A leading dash would reach git as an option.
        raise Invalid(f"repository url {body.url!r} is not a path or URL git can fetch")
    store = services(request).store
    record = await store.create_repository(principal.tenant_id, body.name, body.url)
    return repository_out(record)


@router.get("")
async def list_repositories(
    request: Request, principal: Admin, cursor: Cursor = None, limit: Limit = 50
) -> RepositoriesOut:
    """One page of the tenant's repositories by name; pass `next_cursor` back as `cursor`
    for the next."""
    store = services(request).store
    found, next_cursor = await page(
        lambda after, size: store.list_repositories(principal.tenant_id, after=after, limit=size),
        cursor,
        limit,
        lambda repository: repository.id,
    )
    return RepositoriesOut(items=[repository_out(r) for r in found], next_cursor=next_cursor)


@router.get("/{repository_id}")
async def get(repository_id: str, request: Request, principal: Admin) -> RepositoryOut:
    record = await services(request).store.get_repository(principal.tenant_id, repository_id)
    return repository_out(record)

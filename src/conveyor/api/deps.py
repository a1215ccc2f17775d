"""What every route depends on: the injected services, settings, API errors and authentication.

`create_app(services)` keeps the one `Services` object on `app.state`;
routes reach it through `services(request)`. Authentication turns the bearer
token into a `Principal` (tenant, token kind, runner id): the token is hashed
with SHA-256 and looked up with `Store.find_token`, so tokens never exist in
clear on the server. Every object a route touches is checked against the
principal's tenant; another tenant's object is reported as not found.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

from fastapi import Request

from conveyor.engine.records import (
    JobRecord,
    RepositoryRecord,
    RunRecord,
    WorkflowRecord,
)
from conveyor.engine.store import Store
from conveyor.errors import ConveyorError, NotFound


class ApiError(ConveyorError):
    """An error the API itself raises; `status` and `code` say how it is answered."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid"
    headers: ClassVar[Mapping[str, str] | None] = None


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"
    headers = MappingProxyType({"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class Invalid(ApiError):
    status = 422
    code = "invalid"


class TooLarge(ApiError):
    status = 413
    code = "too_large"


class KeyInUse(ApiError):
    """Another request with the same `Idempotency-Key` is still being answered."""

    status = 409
    code = "idempotency_key_in_use"
    headers = MappingProxyType({"Retry-After": "1"})


class KeyReused(ApiError):
    """The `Idempotency-Key` was first sent with another request (method, path or body)."""

    status = 422
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class Settings:
    """The server's tunables; `conveyor serve` fills them from its command line."""

    data_dir: str
    lease_ttl: float = 600.0
    heartbeat_interval: float = 60.0
    max_poll_wait: float = 50.0
    max_artifact_bytes: int = 1 << 30
    max_request_bytes: int = 25 << 20
    """Any other request body; GitHub's webhook payloads are capped at 25 MB."""
    webhook_secret: str | None = None
    """The `X-Hub-Signature-256` key; without one every webhook is refused."""
    webhook_tenant: str = "default"
    log_poll_interval: float = 0.25
    """How often a log stream looks for new lines (log batches write no outbox event)."""


class StartRun(Protocol):
    """Create a run of a registered workflow for an event (`RunService.start_run`)."""

    async def __call__(
        self,
        tenant_id: str,
        workflow: WorkflowRecord,
        event: str,
        payload: Mapping[str, Any],
        inputs: Mapping[str, Any],
        /,
        *,
        ref: str | None = None,
        idempotency_key: str | None = None,
        as_read: bool = False,
    ) -> RunRecord: ...


class TriggerRuns(Protocol):
    """Start every workflow of `repository` that a webhook event matches; -> the run ids.

    Deduplicates by `delivery_id` (`RunService.trigger`).
    """

    async def __call__(
        self,
        tenant_id: str,
        repository: RepositoryRecord,
        event_name: str,
        payload: Mapping[str, Any],
        delivery_id: str,
        /,
    ) -> list[str]: ...


class Rerun(Protocol):
    """A new attempt of `run`, of all its jobs or only the failed ones (`RunService.rerun`)."""

    async def __call__(self, run: RunRecord, failed_only: bool, /) -> RunRecord: ...


class AssignmentFor(Protocol):
    """The ASSIGNMENT JSON a runner receives with a job it acquired (secrets included)."""

    async def __call__(self, job: JobRecord, /) -> dict[str, Any]: ...


class ReadWorkflow(Protocol):
    """The text of `path` in `repository` at its default branch (workflow registration)."""

    async def __call__(self, repository: RepositoryRecord, path: str, /) -> str: ...


@dataclass(frozen=True)
class Services:
    """Everything the API needs from the rest of the server, injected by `conveyor serve`."""

    store: Store
    settings: Settings
    start_run: StartRun
    trigger: TriggerRuns
    rerun: Rerun
    assignment_for: AssignmentFor
    read_workflow: ReadWorkflow


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's tenant and kind (`admin`, `registration`, `runner`)."""

    tenant_id: str
    kind: str
    runner_id: str | None = None


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def hash_token(token: str) -> str:
    """What the store keeps of a token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def authenticate(request: Request, kinds: frozenset[str]) -> Principal:
    """The principal of the request's bearer token, which must be of one of `kinds`."""
    cached = getattr(request.state, "principal", None)
    if cached is None:
        cached = await _principal(request)
        request.state.principal = cached
    if cached.kind not in kinds:
        allowed = " or ".join(sorted(kinds))
        raise Forbidden(f"this endpoint needs a {allowed} token, not a {cached.kind} token")
    return cached


async def _principal(request: Request) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    digest = hash_token(token)
    cache: dict[str, tuple[float, Principal]] = request.app.state.principals
    now = time.monotonic()
    hit = cache.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    found = await services(request).store.find_token(digest)
    if found is None:
        raise Unauthorized("invalid token")
    principal = Principal(found.tenant_id, found.kind, found.runner_id)
    if len(cache) > PRINCIPAL_CACHE_SIZE:
        cache.clear()
    cache[digest] = (now + PRINCIPAL_CACHE_SECONDS, principal)
    return principal


PRINCIPAL_CACHE_SECONDS = 10.0
"""A runner calls several times a second; looking its token up once per 10 s saves a
database transaction a request. Tokens are never modified, only created, so a cached
principal is never stale (revocation, when it exists, must clear this cache)."""
PRINCIPAL_CACHE_SIZE = 10_000


_ADMIN = frozenset({"admin"})
_RUNNER = frozenset({"runner"})
_REGISTRATION = frozenset({"registration"})
_ADMIN_OR_RUNNER = frozenset({"admin", "runner"})


async def admin(request: Request) -> Principal:
    return await authenticate(request, _ADMIN)


async def runner(request: Request) -> Principal:
    return await authenticate(request, _RUNNER)


async def registration(request: Request) -> Principal:
    return await authenticate(request, _REGISTRATION)


async def admin_or_runner(request: Request) -> Principal:
    return await authenticate(request, _ADMIN_OR_RUNNER)


async def job_of_tenant(store: Store, principal: Principal, job_id: str) -> JobRecord:
    """The job, if it belongs to the caller's tenant (NotFound otherwise)."""
    job = await store.get_job(job_id)
    if job.tenant_id != principal.tenant_id:
        raise NotFound(f"job {job_id!r} not found")
    return job

"""`create_app(services)`: the FastAPI application of `conveyor serve`, and its error table.

Every error leaves the API as JSON `{"code": ..., "message": ...}` with a
stable code. Domain errors are translated here, in one table, where they
enter HTTP (see `ERRORS`); FastAPI's own request validation becomes 422
`invalid`; anything unexpected is a 500 `internal` that shows no internals.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.api.deps import ApiError, Services
from conveyor.api.fastlane import FastLane
from conveyor.api.routes import (
    artifacts,
    health,
    jobs,
    logs,
    repositories,
    runners,
    runs,
    webhooks,
    workflows,
)
from conveyor.engine.sources import SourceError
from conveyor.errors import (
    Conflict,
    ConveyorError,
    ExpressionError,
    LeaseLost,
    NotFound,
    StoreError,
    WorkflowError,
)
from conveyor.workflow.triggers import EventError, InputError

ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    # Most specific first: LeaseLost is a Conflict, and both are StoreErrors.
    (LeaseLost, 409, "lease_lost"),
    (Conflict, 409, "conflict"),
    (NotFound, 404, "not_found"),
    (WorkflowError, 422, "invalid"),
    (InputError, 422, "invalid"),
    (EventError, 422, "invalid"),
    (ExpressionError, 422, "invalid"),
    (SourceError, 422, "invalid"),
    (StoreError, 503, "unavailable"),
    # Anything else raised on purpose says what was wrong with the request.
    (ConveyorError, 422, "invalid"),
)
"""Domain error → (HTTP status, stable code). `ApiError`s carry their own."""

_HTTP_CODES: Mapping[int, str] = {
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}
_ARTIFACT_UPLOAD = re.compile(r"^/api/v1/jobs/[^/]+/artifacts/")


def create_app(services: Services) -> FastAPI:
    """The application; every request reaches `services` through `app.state`."""
    app = FastAPI(
        title="Conveyor",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.services = services
    app.state.principals = {}  # token hash -> (expiry, Principal): see deps.PRINCIPAL_CACHE_SECONDS
    app.state.polling = {}  # runner id -> (when last seen, labels): see routes.runners.poll
    app.state.leases = {}  # job id -> (runner id, epoch) handed out: see routes.runners._leased
    app.state.workflows = {}  # (tenant, workflow id) -> record: see routes.workflows.dispatch
    # Set as the server begins to stop: see routes.runners.poll.
    app.state.stopping = asyncio.Event()
    # The routers' routes join the application's own list instead of being included:
    # FastAPI matches an included router's routes twice per request, ~100 µs a request
    # with these, a fifth of the server's time for a short job. The runner's come first.
    for router in (
        runners.router,
        workflows.router,
        repositories.router,
        runs.router,
        jobs.router,
        logs.router,
        artifacts.router,
        webhooks.router,
        health.router,
    ):
        app.router.routes.extend(router.routes)
    for error, _, _ in ERRORS:
        app.add_exception_handler(error, _domain_error)
    app.add_exception_handler(ApiError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(FastLane, error_response=error_response)  # inside BodyLimit
    app.add_middleware(BodyLimit, limit=services.settings.max_request_bytes)
    return app


def error_response(exc: Exception) -> JSONResponse:
    """The JSON answer for a domain or API error."""
    if isinstance(exc, ApiError):
        return _json(exc.status, exc.code, str(exc), exc.headers)
    for error, status, code in ERRORS:
        if isinstance(exc, error):
            return _json(status, code, _message(exc))
    return _json(500, "internal", "internal server error")


async def _domain_error(request: Request, exc: Exception) -> Response:
    return error_response(exc)


def _message(exc: Exception) -> str:
    if isinstance(exc, WorkflowError):
        # `file:line:col: message` per problem, as the CLI prints them.
        return "\n".join(f"{d.span}: {d.message}" for d in exc.diagnostics)
    return str(exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = [_problem(error) for error in exc.errors()]
    return _json(422, "invalid", "; ".join(problems) or "invalid request")


def _problem(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "json_invalid":
        message = f"body is not valid JSON ({error.get('ctx', {}).get('error', 'bad syntax')})"
        where = "body"
    return f"{where}: {message}" if where else message


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "invalid" if exc.status_code < 500 else "internal")
    return _json(exc.status_code, code, str(exc.detail), exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    return _json(500, "internal", "internal server error")


def _json(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status, headers=headers)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413 before any route reads them.

    The body is read here, at most `limit` bytes of it, and handed on; a
    body that declares or turns out to be larger is answered at once.
    Artifact uploads stream to disk and enforce their own, larger limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "PUT" and _ARTIFACT_UPLOAD.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body is larger than {self.limit} bytes"
        await _json(413, "too_large", message, {"Connection": "close"})(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

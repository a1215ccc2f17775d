"""The two calls every job makes, answered without FastAPI's machinery around them.

A short job costs the server a dispatch and its runner's report. FastAPI's
layers around those two (routing, dependency resolution, validation and
serialization, all in Python) took a third of the server's CPU for them,
as much as the store did. `FastLane` answers them itself with the pieces
the routes are made of: the route's request model validates the body, the
token dependency authenticates, the route function does the work and the
application's error table answers its errors. Whatever it does not expect
(a body that is not JSON or that the model refuses, an `Idempotency-Key`,
any other call) goes on to FastAPI, which answers as it always does: the
routes remain the definition of these calls, and of the OpenAPI document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.api.deps import admin, runner
from conveyor.api.routes import API, runners, workflows
from conveyor.api.schemas import DispatchIn, ReportIn
from conveyor.errors import ConveyorError


@dataclass(frozen=True)
class _Call:
    path: re.Pattern[str]
    """The call's path; its one group is the path parameter."""
    body: type[BaseModel]
    answer: Callable[[str, Any, Request], Awaitable[BaseModel]]
    status: int


async def _report(job_id: str, body: ReportIn, request: Request) -> BaseModel:
    return await runners.report(job_id, body, request, await runner(request))


async def _dispatch(workflow_id: str, body: DispatchIn, request: Request) -> BaseModel:
    return await workflows.dispatch(workflow_id, body, request, await admin(request))


_CALLS = (
    _Call(re.compile(rf"{API}/jobs/([^/]+)/report"), ReportIn, _report, 200),
    _Call(re.compile(rf"{API}/workflows/([^/]+)/dispatch"), DispatchIn, _dispatch, 202),
)


class FastLane:
    """ASGI middleware: the calls of `_CALLS` answered here, the rest passed on to `app`.

    `error_response` answers a ConveyorError as the application's handlers
    would; any other exception propagates, as it would from a route.
    """

    def __init__(self, app: ASGIApp, error_response: Callable[[Exception], Response]) -> None:
        self.app = app
        self.error_response = error_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = _call_for(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        call, parameter = found
        body = await _read(receive)
        receive = _replaying(body, receive)
        parsed = _parsed(call.body, body)
        if parsed is None:  # FastAPI says what is wrong with it
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            answer = await call.answer(parameter, parsed, request)
        except ConveyorError as exc:
            response = self.error_response(exc)
        else:
            response = Response(answer.model_dump_json(), call.status, media_type=_JSON)
        await response(scope, receive, send)


_JSON = "application/json"


def _call_for(scope: Scope) -> tuple[_Call, str] | None:
    """The call the request makes and its path parameter, if it is one of ours in the
    form we answer."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    for call in _CALLS:
        match = call.path.fullmatch(scope["path"])
        if match is not None:
            break
    else:
        return None
    content_type = b""
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            return None  # stored and replayed by the route (see idempotency.py)
        if name == b"content-type":
            content_type = value
    if content_type.split(b";", 1)[0].strip().lower() != _JSON.encode():
        return None
    return call, match[1]


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """`receive` for whoever reads the body next: the body again, then the connection."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _parsed(model: type[BaseModel], body: bytes) -> BaseModel | None:
    """The body as `model`, validated as FastAPI validates it; None when it is not one."""
    try:
        return model.model_validate(json.loads(body))
    except (ValueError, ValidationError):  # not JSON (JSONDecodeError, UnicodeDecodeError)
        return None

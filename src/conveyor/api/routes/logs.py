"""Job logs: a page of lines, the whole text, and a live Server-Sent Events stream.

Lines are numbered per job from 1 (`seq`). The stream sends each line as an
event whose id is its seq, so a client that reconnects with
`Last-Event-ID: N` resumes after line N; it ends with an `end` event once
the job is terminal and every line has been sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from conveyor.api.deps import Invalid, Principal, admin, job_of_tenant, services
from conveyor.api.routes import API
from conveyor.api.schemas import LogPageOut, log_line_out
from conveyor.engine.states import is_terminal
from conveyor.engine.store import Store

router = APIRouter(prefix=f"{API}/jobs", tags=["logs"])

Admin = Annotated[Principal, Depends(admin)]
PAGE = 1000
KEEPALIVE = 15.0
"""Seconds of silence after which the stream sends a comment, to notice gone clients."""


@router.get("/{job_id}/logs")
async def page(
    job_id: str,
    request: Request,
    principal: Admin,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE)] = PAGE,
) -> LogPageOut:
    """Up to `limit` lines after seq `after`; `next` is the `after` of the next page, if full."""
    store = services(request).store
    job = await job_of_tenant(store, principal, job_id)
    lines = await store.read_log(job.id, after, limit)
    following = lines[-1].seq if len(lines) == limit else None
    return LogPageOut(lines=[log_line_out(line) for line in lines], next=following)


@router.get("/{job_id}/logs.txt", response_class=StreamingResponse)
async def text(job_id: str, request: Request, principal: Admin) -> StreamingResponse:
    """The whole log as plain text, one line per line."""
    store = services(request).store
    job = await job_of_tenant(store, principal, job_id)
    return StreamingResponse(_text(store, job.id), media_type="text/plain; charset=utf-8")


async def _text(store: Store, job_id: str) -> AsyncIterator[str]:
    after = 0
    while True:
        lines = await store.read_log(job_id, after, PAGE)
        if not lines:
            return
        yield "".join(line.text + "\n" for line in lines)
        after = lines[-1].seq


@router.get("/{job_id}/logs/stream", response_class=StreamingResponse)
async def stream(
    job_id: str,
    request: Request,
    principal: Admin,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """`text/event-stream` of the job's lines, live, resuming after `Last-Event-ID`."""
    svc = services(request)
    job = await job_of_tenant(svc.store, principal, job_id)
    after = 0
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise Invalid(f"Last-Event-ID {last_event_id!r} is not a line number")
        after = int(last_event_id)
    events = _events(svc.store, job.id, after, svc.settings.log_poll_interval)
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(store: Store, job_id: str, after: int, interval: float) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while True:
        # Read the status before the lines: a job seen terminal has no more lines to come.
        finished = is_terminal((await store.get_job(job_id)).status)
        lines = await store.read_log(job_id, after, PAGE)
        for line in lines:
            data = json.dumps({"seq": line.seq, "step": line.step_index, "text": line.text})
            yield f"id: {line.seq}\nevent: log\ndata: {data}\n\n"
            after = line.seq
        if lines:
            quiet_since = loop.time()
            continue
        if finished:
            yield "event: end\ndata: {}\n\n"
            return
        if loop.time() - quiet_since > KEEPALIVE:
            yield ": keepalive\n\n"
            quiet_since = loop.time()
        await asyncio.sleep(interval)

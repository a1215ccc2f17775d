"""The runner protocol: register, long-poll for a job, and report on it under its lease.

Every write after the poll carries the lease epoch (the fencing token) and
is one fenced store write: a stale epoch is answered 409 `lease_lost` and
leaves no trace. A job is handed out only by `Store.acquire_job`; the poll
response is the acknowledgement a runner waits for before it starts work.
Runners report through `report` (a batch of events in one transaction); the
single-transition endpoints (start, steps, logs, complete) serve other
clients and tools. Artifacts, which also need the lease, live in
`routes.artifacts`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from conveyor.api.deps import (
    Principal,
    Services,
    hash_token,
    job_of_tenant,
    registration,
    runner,
    services,
)
from conveyor.api.routes import API
from conveyor.api.schemas import (
    CompleteIn,
    EpochIn,
    HeartbeatIn,
    HeartbeatOut,
    JobStartEvent,
    LogsEvent,
    LogsIn,
    LogsOut,
    PollIn,
    PollOut,
    RegisterIn,
    RegisterOut,
    ReportEventIn,
    ReportIn,
    ReportOut,
    StepEndEvent,
    StepFinishIn,
    StepStartEvent,
    StepStartIn,
)
from conveyor.engine.records import JobRecord
from conveyor.engine.reports import (
    JobEnded,
    JobStarted,
    LogLines,
    ReportEvent,
    StepEnded,
    StepFinish,
    StepStarted,
)
from conveyor.engine.states import Conclusion, JobStatus, StepStatus
from conveyor.errors import ConveyorError, LeaseLost

router = APIRouter(prefix=API, tags=["runner protocol"])


Runner = Annotated[Principal, Depends(runner)]
StepIndex = Annotated[int, Path(ge=0, le=100_000)]

TOUCH_EVERY = 15.0
"""Seconds between two `last_seen_at` updates of a polling runner."""
POLLING_CACHE_SIZE = 10_000
LEASE_CACHE_SIZE = 100_000
"""Leases granted here that runner writes are checked against without a read."""

_JOB_STATUS = {
    "success": JobStatus.COMPLETED,
    "failure": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELLED,
}
_STEP_STATUS = {
    "success": StepStatus.COMPLETED,
    "failure": StepStatus.FAILED,
    "cancelled": StepStatus.FAILED,
    "skipped": StepStatus.SKIPPED,
}


@router.post("/runners/register", status_code=201)
async def register(
    body: RegisterIn, request: Request, principal: Annotated[Principal, Depends(registration)]
) -> RegisterOut:
    """Register a runner with a registration token; its own token is shown this once."""
    token = secrets.token_urlsafe(32)
    record = await services(request).store.register_runner(
        principal.tenant_id, body.name, body.labels, token_hash=hash_token(token)
    )
    return RegisterOut(runner_id=record.id, token=token)


@router.post("/runners/poll")
async def poll(body: PollIn, request: Request, principal: Runner) -> PollOut:
    """A job whose labels the runner has, at once if one is queued, else after `wait` seconds."""
    svc = services(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(body.wait, svc.settings.max_poll_wait)
    handed = None if body.request is None else _POLL + body.request
    if handed is not None and body.again:
        assert principal.runner_id is not None
        job = await svc.store.hand_again(principal.runner_id, handed, svc.settings.lease_ttl)
        if job is not None and (assignment := await _handing_out(request, svc, job)):
            return PollOut(job=assignment)
    stopping: asyncio.Event = request.app.state.stopping
    while not (stopping.is_set() or await request.is_disconnected()):
        assignment = await _take_job(request, svc, principal, handed)
        if assignment is not None:
            return PollOut(job=assignment)
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        await svc.store.wait_for_queued(remaining)  # a stopping server wakes it
    return PollOut(job=None)  # a stopping server answers at once: the runner asks another


_POLL = "poll:"
"""What a poll's `request` is stored behind (reports have their own, see rows)."""


async def _take_job(
    request: Request, svc: Services, principal: Principal, handed: str | None = None
) -> dict[str, object] | None:
    """The assignment of a queued job for the runner, now leased to it under the call
    `handed`; None if none is queued for its labels."""
    assert principal.runner_id is not None
    labels = await _labels(request, svc, principal.runner_id)
    while True:
        job = await svc.store.acquire_job(
            principal.runner_id,
            labels,
            svc.settings.lease_ttl,
            tenant_id=principal.tenant_id,
            request=handed,
        )
        if job is None:
            return None
        assignment = await _handing_out(request, svc, job)
        if assignment is not None:
            return assignment


async def _handing_out(request: Request, svc: Services, job: JobRecord) -> dict[str, object] | None:
    """The ASSIGNMENT of a job just leased to the runner; None when it cannot be described
    (the job then failed)."""
    assignment = await _assignment(svc, job)
    if assignment is not None:
        _handed_out(request, job)
    return assignment


async def _labels(request: Request, svc: Services, runner_id: str) -> Sequence[str]:
    """The runner's labels; its `last_seen_at` moves on at most every TOUCH_EVERY seconds.

    A runner's labels never change (registering again makes a new runner), so a
    busy runner's polls need no read of its row between two touches.
    """
    polling: dict[str, tuple[float, Sequence[str]]] = request.app.state.polling
    now = time.monotonic()
    seen = polling.get(runner_id)
    if seen is not None and now - seen[0] < TOUCH_EVERY:
        return seen[1]
    record = await svc.store.get_runner(runner_id)
    if record.last_seen_at is None or time.time() - record.last_seen_at > TOUCH_EVERY:
        await svc.store.touch_runner(record.id)
    if len(polling) > POLLING_CACHE_SIZE:
        polling.clear()
    polling[runner_id] = (now, record.labels)
    return record.labels


async def _assignment(svc: Services, job: JobRecord) -> dict[str, object] | None:
    """The job's ASSIGNMENT; a job that cannot be described fails instead of being handed out."""
    try:
        assignment = await svc.assignment_for(job)
    except ConveyorError as exc:
        await svc.store.finish_job(
            job.id, job.lease_epoch, JobStatus.FAILED, Conclusion.FAILURE, {}, reason=str(exc)
        )
        return None
    # The lease is the API's to grant: its epoch and timings win over the engine's.
    return {
        **assignment,
        "job_id": job.id,
        "epoch": job.lease_epoch,
        "lease_ttl": svc.settings.lease_ttl,
        "heartbeat_interval": svc.settings.heartbeat_interval,
    }


async def _leased(request: Request, principal: Principal, job_id: str, epoch: int) -> Services:
    """The services, once the job is known to be the caller's tenant's and leased to it.

    A lease this server handed out answers without a read: a job's tenant never
    changes and its lease epochs are never reused, so "this runner held lease
    `epoch` of the job" stays true; whether the lease still holds, the store's
    fencing decides with the write.
    """
    svc = services(request)
    if request.app.state.leases.get(job_id) == (principal.runner_id, epoch):
        return svc
    job = await job_of_tenant(svc.store, principal, job_id)
    if job.lease_owner != principal.runner_id:
        raise LeaseLost(f"job {job_id!r} is not leased to this runner")
    return svc


def _handed_out(request: Request, job: JobRecord) -> None:
    """Remember the lease just granted (see `_leased`)."""
    leases: dict[str, tuple[str | None, int]] = request.app.state.leases
    if len(leases) > LEASE_CACHE_SIZE:
        leases.clear()
    leases[job.id] = (job.lease_owner, job.lease_epoch)


@router.post("/jobs/{job_id}/start")
async def start(job_id: str, body: EpochIn, request: Request, principal: Runner) -> dict[str, str]:
    svc = await _leased(request, principal, job_id, body.epoch)
    await svc.store.start_job(job_id, body.epoch)
    return {}


@router.post("/jobs/{job_id}/heartbeat")
async def heartbeat(
    job_id: str, body: HeartbeatIn, request: Request, principal: Runner
) -> HeartbeatOut:
    """Renew the lease; with `wait`, answer when the job's cancel is asked for or when
    `wait` seconds have passed (renewing again on the way), so that a cancel reaches a
    quiet job at once and not at its next heartbeat."""
    svc = await _leased(request, principal, job_id, body.epoch)
    ttl = svc.settings.lease_ttl
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(body.wait, svc.settings.heartbeat_interval)
    stopping: asyncio.Event = request.app.state.stopping
    while True:
        svc.store.cancels_looked()
        job = await svc.store.renew_lease(job_id, body.epoch, ttl)
        remaining = deadline - loop.time()
        done = job.cancel_requested or remaining <= 0 or stopping.is_set()
        if done or await request.is_disconnected():  # the job ended; its runner left
            return HeartbeatOut(cancel_requested=job.cancel_requested, lease_ttl=ttl)
        # Woken by any job's cancel (rare), by a stopping server, or at the deadline.
        await svc.store.wait_for_cancel(remaining)


@router.post("/jobs/{job_id}/steps/{index}/start")
async def step_start(
    job_id: str, index: StepIndex, body: StepStartIn, request: Request, principal: Runner
) -> dict[str, str]:
    svc = await _leased(request, principal, job_id, body.epoch)
    await svc.store.start_step(job_id, body.epoch, index, body.step_id, body.name)
    return {}


@router.post("/jobs/{job_id}/steps/{index}/finish")
async def step_finish(
    job_id: str, index: StepIndex, body: StepFinishIn, request: Request, principal: Runner
) -> dict[str, str]:
    svc = await _leased(request, principal, job_id, body.epoch)
    await svc.store.finish_step(
        job_id,
        body.epoch,
        index,
        _step_status(body),
        Conclusion(body.outcome),
        Conclusion(body.conclusion),
        body.outputs,
        step_id=body.step_id,
        name=body.name,
    )
    return {}


@router.post("/jobs/{job_id}/report")
async def report(job_id: str, body: ReportIn, request: Request, principal: Runner) -> ReportOut:
    """What happened to the job since the last report, in order: one request, one transaction.

    The runner's usual write: a short job's start, steps, lines and end
    arrive in one report. A refusal (409) refuses the whole report.
    """
    svc = await _leased(request, principal, job_id, body.epoch)
    events = [_event(event) for event in body.events]
    if not body.next:
        last = await svc.store.apply_report(job_id, body.epoch, events, seq=body.seq)
        return ReportOut(last_seq=last)
    # The runner's slot is free: what its next poll would do, without the poll.
    assert principal.runner_id is not None
    last, job = await svc.store.report_and_acquire(
        job_id,
        body.epoch,
        events,
        seq=body.seq,
        runner_id=principal.runner_id,
        labels=await _labels(request, svc, principal.runner_id),
        lease_ttl=svc.settings.lease_ttl,
        tenant_id=principal.tenant_id,
    )
    following = await _handing_out(request, svc, job) if job is not None else None
    if following is None and job is not None:  # it could not be described, and failed
        following = await _take_job(request, svc, principal)
    return ReportOut(last_seq=last, job=following)


def _event(event: ReportEventIn) -> ReportEvent:
    if isinstance(event, JobStartEvent):
        return JobStarted()
    if isinstance(event, StepStartEvent):
        return StepStarted(event.index, event.step_id, event.name, event.at)
    if isinstance(event, LogsEvent):
        return LogLines(event.lines)
    if isinstance(event, StepEndEvent):
        finish = StepFinish(
            _step_status(event),
            Conclusion(event.outcome),
            Conclusion(event.conclusion),
            event.outputs,
            event.step_id,
            event.name,
        )
        return StepEnded(event.index, finish, event.at)
    return JobEnded(
        _JOB_STATUS[event.conclusion], Conclusion(event.conclusion), event.outputs, event.reason
    )


def _step_status(body: StepFinishIn | StepEndEvent) -> StepStatus:
    """A restored step did not run: skipped, though it keeps its recorded success."""
    skipped = body.restored or body.conclusion == "skipped"
    return _STEP_STATUS["skipped" if skipped else body.outcome]


@router.post("/jobs/{job_id}/logs")
async def append_logs(job_id: str, body: LogsIn, request: Request, principal: Runner) -> LogsOut:
    svc = await _leased(request, principal, job_id, body.epoch)
    last = await svc.store.append_log(job_id, body.epoch, body.lines)
    return LogsOut(last_seq=last)


@router.post("/jobs/{job_id}/complete")
async def complete(
    job_id: str, body: CompleteIn, request: Request, principal: Runner
) -> dict[str, str]:
    svc = await _leased(request, principal, job_id, body.epoch)
    await svc.store.finish_job(
        job_id,
        body.epoch,
        _JOB_STATUS[body.conclusion],
        Conclusion(body.conclusion),
        body.outputs,
        reason=body.reason,
    )
    return {}

"""The server's background loops: the outbox-driven scheduler, the reaper and cron.

None of them keeps state of its own (cron remembers only which of its own starts
failed, to try them again). The scheduler reads outbox events after
a durable cursor and moves the cursor with a compare-and-set, so a restarted
(or a second) server carries on where the last one stopped; the reaper is one
conditional UPDATE; a cron tick's run carries the tick in its idempotency key,
so however many servers run, each tick starts one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from conveyor.engine.records import RunRecord, WorkflowRecord, scheduler_work
from conveyor.engine.scheduler import Scheduler
from conveyor.engine.store import Store
from conveyor.errors import ConveyorError, NotFound

log = logging.getLogger("conveyor.service")

CONSUMER = "scheduler"


class SchedulerLoop:
    """Consumes the outbox and advances every run an event touched."""

    def __init__(self, store: Store, scheduler: Scheduler, *, poll: float = 1.0) -> None:
        self._store = store
        self._scheduler = scheduler
        self._poll = poll

    async def run_forever(self) -> None:
        while True:
            try:
                busy = await self.step()
            except ConveyorError as exc:
                log.warning("scheduler: %s", exc)
                busy = False
            if not busy:  # woken by the commits that leave it work (the store's signals)
                await self._store.wait_for_event(self._poll)

    async def step(self, batch: int = 200) -> bool:
        """Handle one batch of events; -> True when there may be more."""
        cursor = await self._store.get_cursor(CONSUMER)
        events = await self._store.events_after(cursor, batch)
        if not events:
            return False
        work = scheduler_work((e.kind, e.run_id, e.data) for e in events)
        for run_id in work.advance:
            with contextlib.suppress(NotFound):
                await self._scheduler.advance(run_id)
        # A run that ended may free its concurrency group for a run waiting behind it.
        for run_id in work.release:
            with contextlib.suppress(NotFound):
                await self._scheduler.release(run_id)
        # Another scheduler may have moved the cursor meanwhile: its work and ours overlap
        # harmlessly (every decision is a compare-and-set), so losing the race is fine.
        await self._store.advance_cursor(CONSUMER, cursor, events[-1].id)
        return len(events) == batch


class Reaper:
    """Re-queues (or fails) jobs whose lease expired: their runner is gone."""

    def __init__(self, store: Store, *, interval: float, max_retries: int) -> None:
        self._store = store
        self._interval = interval
        self._max_retries = max_retries

    async def run_forever(self) -> None:
        while True:
            try:
                reaped = await self._store.reap_expired(self._max_retries)
                for job in reaped:
                    log.warning("lease expired: job %s -> %s", job.id, job.status)
            except ConveyorError as exc:
                log.warning("reaper: %s", exc)
            await asyncio.sleep(self._interval)


class CronLoop:
    """Fires `schedule:` triggers of registered workflows once per tick, cluster-wide.

    Every server fires every tick; the run's idempotency key, (workflow, schedule,
    tick), lets one run be created whichever server gets there first, in the run's
    own transaction. So a tick is lost neither when a server dies while starting
    it nor when its start fails on one server and not on another. A start that
    fails (a repository that cannot be fetched, say) is tried again at the next
    minute while the tick is younger than `RETRY_FOR`.
    """

    RETRY_FOR = 600.0

    def __init__(
        self,
        store: Store,
        start: Callable[[str, WorkflowRecord, str, str], Awaitable[RunRecord]],
        *,
        tenants: Callable[[], Awaitable[list[str]]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._start = start
        self._tenants = tenants
        self._clock = clock
        self._last = clock()
        self._failed: dict[tuple[str, str, str, float], WorkflowRecord] = {}
        """Ticks whose start failed here: (tenant, workflow id, schedule, tick) -> workflow."""

    async def run_forever(self) -> None:
        while True:
            now = self._clock()
            # Sleep to just past the next minute boundary.
            await asyncio.sleep(max(0.5, 60 - now % 60 + 0.05))
            try:
                await self.fire(self._clock())
            except ConveyorError as exc:  # the store is unreachable: the next minute retries
                log.warning("cron: %s", exc)

    async def fire(self, now: float) -> set[str]:
        """Start the runs of every tick in (last check, now], and of the ticks whose start
        failed here lately; -> the ids of those runs (some may have been started by
        another server)."""
        since, self._last = self._last, now
        due, self._failed = dict(self._failed), {}
        for tenant in await self._tenants():
            for record in await _all_workflows(self._store, tenant):
                for cron, tick in _ticks(record, since, now):
                    due[(tenant, record.id, cron, tick)] = record
        runs = set()
        for (tenant, workflow_id, cron, tick), record in due.items():
            try:
                run = await self._start(
                    tenant, record, cron, f"cron:{workflow_id}:{cron}:{tick:.0f}"
                )
            except ConveyorError as exc:
                log.warning("cron: %s at %s: %s", record.path, _utc(tick), exc)
                if now - tick < self.RETRY_FOR:
                    self._failed[(tenant, workflow_id, cron, tick)] = record
            else:
                runs.add(run.id)
        return runs


def _ticks(record: WorkflowRecord, since: float, now: float) -> list[tuple[str, float]]:
    """The (schedule, tick) pairs of an enabled workflow's `schedule:` in (since, now]."""
    from conveyor.workflow import parse_workflow
    from conveyor.workflow.cron import parse_cron

    if not record.enabled or record.source is None:
        return []
    try:
        trigger = parse_workflow(record.path, record.source).on.get("schedule")
    except ConveyorError:
        return []
    if trigger is None:
        return []
    start, end = _utc(since), _utc(now)
    return [
        (cron, tick.timestamp())
        for cron in trigger.crons
        for tick in parse_cron(cron).ticks_between(start, end)
    ]


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


async def _all_workflows(store: Store, tenant: str) -> list[WorkflowRecord]:
    out: list[WorkflowRecord] = []
    after: str | None = None
    while True:
        page = await store.list_workflows(tenant, after=after, limit=200)
        out.extend(page)
        if len(page) < 200:
            return out
        after = page[-1].id

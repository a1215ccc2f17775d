"""The server's background loops: the outbox-driven scheduler, the reaper and cron.

None of them keeps state of its own. The scheduler reads outbox events after
a durable cursor and moves the cursor with a compare-and-set, so a restarted
(or a second) server carries on where the last one stopped; the reaper is one
conditional UPDATE; a cron tick is claimed by a unique row, so however many
servers run, each tick starts one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from conveyor.engine.records import WorkflowRecord, scheduler_work
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
    """Fires `schedule:` triggers of registered workflows once per tick, cluster-wide."""

    def __init__(
        self,
        store: Store,
        start: Callable[[str, WorkflowRecord, str], Awaitable[object]],
        *,
        tenants: Callable[[], Awaitable[list[str]]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._start = start
        self._tenants = tenants
        self._clock = clock
        self._last = clock()

    async def run_forever(self) -> None:
        while True:
            now = self._clock()
            # Sleep to just past the next minute boundary.
            await asyncio.sleep(max(0.5, 60 - now % 60 + 0.05))
            with contextlib.suppress(ConveyorError):
                await self.fire(self._clock())

    async def fire(self, now: float) -> int:
        """Start the runs of every tick in (last check, now]; -> runs started here."""
        from conveyor.workflow import parse_workflow
        from conveyor.workflow.cron import parse_cron

        since, self._last = self._last, now
        started = 0
        start_dt = datetime.fromtimestamp(since, UTC)
        end_dt = datetime.fromtimestamp(now, UTC)
        for tenant in await self._tenants():
            for record in await _all_workflows(self._store, tenant):
                if not record.enabled or record.source is None:
                    continue
                try:
                    model = parse_workflow(record.path, record.source)
                except ConveyorError:
                    continue
                trigger = model.on.get("schedule")
                if trigger is None:
                    continue
                for cron in trigger.crons:
                    for tick in parse_cron(cron).ticks_between(start_dt, end_dt):
                        if await self._store.claim_cron_tick(record.id, cron, tick.timestamp()):
                            await self._start(tenant, record, cron)
                            started += 1
        return started


async def _all_workflows(store: Store, tenant: str) -> list[WorkflowRecord]:
    out: list[WorkflowRecord] = []
    after: str | None = None
    while True:
        page = await store.list_workflows(tenant, after=after, limit=200)
        out.extend(page)
        if len(page) < 200:
            return out
        after = page[-1].id

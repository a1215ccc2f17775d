"""The wake-ups behind `Store.wait_for_event` and `wait_for_queued`.

Each is a generation count and the tasks waiting on it.

Every committed outbox row bumps the generation (a store's own writes, and
on PostgreSQL every NOTIFY its listener hears). `looked()` records, in the
calling task's context, the generation seen when it last read the outbox or
the queue; `wait()` returns at once when the generation has moved since, so
a commit that lands between "found nothing" and "wait" is never slept
through. Waiters may sit on several event loops (threads sharing a SQLite
store): each is woken on its own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Collection, Mapping
from contextvars import ContextVar
from typing import Any

from conveyor.engine.records import QUEUEING, scheduler_work

# (signal number, generation) of the last look this task took; one store at a time.
_LOOKED: ContextVar[tuple[int, int] | None] = ContextVar("conveyor_outbox_looked", default=None)
_NUMBERS = itertools.count(1)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class OutboxSignal:
    """Counts outbox commits and wakes the tasks waiting for the next one; thread-safe."""

    def __init__(self) -> None:
        self._number = next(_NUMBERS)
        self._generation = 0
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def looked(self) -> None:
        """Note that the calling task has just read the outbox or the queue."""
        _LOOKED.set((self._number, self._generation))

    def notify(self) -> None:
        """An outbox row was committed: wake every waiter."""
        with self._lock:
            self._generation += 1
            waiters, self._waiters = self._waiters, set()
        for loop, waiter in waiters:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, waiter)

    async def wait(self, timeout: float) -> None:
        """Return after the next `notify`, at once if one came since `looked`, or after `timeout`."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (loop, waiter)
        with self._lock:
            seen = _LOOKED.get()
            moved = seen is not None and seen[0] == self._number and seen[1] != self._generation
            sleep = not moved and timeout > 0
            if sleep:
                self._waiters.add(entry)
        try:
            if sleep:
                await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(entry)
            self.looked()


class Signals:
    """A store's two wake-ups: `outbox` for the scheduler, `queue` for polling runners.

    A commit wakes only those its events concern: most commits (an
    acquisition, a step's start) concern neither, and a woken poll or
    scheduler costs database round trips for nothing.
    """

    def __init__(self) -> None:
        self.outbox = OutboxSignal()
        self.queue = OutboxSignal()

    @staticmethod
    def flags(events: Collection[tuple[str, str, Mapping[str, Any]]]) -> str:
        """Whom a commit of these events, as (kind, run id, data), concerns: "s" (the
        scheduler, when it leaves it work), "q" (polling runners)."""
        scheduler = any(scheduler_work(events))
        queue = any(kind in QUEUEING for kind, _, _ in events)
        return ("s" if scheduler else "") + ("q" if queue else "")

    def committed(self, flags: str) -> None:
        """Wake whom `flags` names (a commit here, or a notification from elsewhere)."""
        if "s" in flags:
            self.outbox.notify()
        if "q" in flags:
            self.queue.notify()

"""The wake-ups behind `Store.wait_for_event` and `wait_for_queued`.

Each is a generation count and the tasks waiting on it.

Every commit that concerns a signal bumps its generation (a store's own
writes, and on PostgreSQL every NOTIFY its listener hears). `looked()`
records, in the calling task's context, the generation seen when it last
read the outbox or the queue; `wait()` returns at once when the generation
has moved since, so a commit that lands between "found nothing" and "wait"
is never slept through. Waiters may sit on several event loops (threads
sharing a SQLite store): each is woken on its own loop.

The scheduler's signal wakes every waiter. The queue's wakes as many polling
runners as the commit queued jobs, longest waiting first: waking them all
would send every idle runner after a job only one of them gets. A woken
poll that finds nothing to take (another runner was quicker, or the job
wants labels it lacks) passes its wake-up on to the next runner the commit
left asleep, so a job waits for no poll's timeout while some runner could
take it. A woken poll that ends without trying passes it on too.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Collection, Mapping
from contextvars import ContextVar
from typing import Any

from conveyor.engine.records import QUEUEING, EventKind, scheduler_work

# (signal number, generation) of the last look this task took; one store at a time.
_LOOKED: ContextVar[tuple[int, int] | None] = ContextVar("conveyor_outbox_looked", default=None)
_NUMBERS = itertools.count(1)

Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Wake | None]"]


class Wake:
    """A wake-up a commit of queued jobs handed one waiting poll, and the polls it left
    asleep, to which it passes when the poll finds nothing."""

    def __init__(self, signal: QueueSignal, asleep: list[Waiter]) -> None:
        self.signal = signal
        self.asleep = asleep
        self.tried = False


# The wake-up this task was last woken by, until it has tried to take a job.
_WOKEN: ContextVar[Wake | None] = ContextVar("conveyor_queue_woken", default=None)


def _wake(waiter: asyncio.Future[Wake | None], wake: Wake | None = None) -> None:
    if not waiter.done():
        waiter.set_result(wake)
    elif wake is not None:  # the poll timed out meanwhile: the next one in line gets it
        wake.signal.pass_on(wake)


class OutboxSignal:
    """Counts outbox commits and wakes the tasks waiting for the next one; thread-safe."""

    def __init__(self) -> None:
        self._number = next(_NUMBERS)
        self._generation = 0
        self._lock = threading.Lock()
        self._waiters: dict[Waiter, None] = {}
        """In the order they began waiting."""

    def looked(self) -> None:
        """Note that the calling task has just read the outbox or the queue."""
        _LOOKED.set((self._number, self._generation))

    def notify(self) -> None:
        """A commit concerning this signal: wake every waiter."""
        with self._lock:
            self._generation += 1
            waiters, self._waiters = list(self._waiters), {}
        for waiter in waiters:
            _send(waiter, None)

    async def wait(self, timeout: float) -> None:
        """Return after the next `notify`, at once if one came since `looked`, or after `timeout`."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Wake | None] = loop.create_future()
        entry = (loop, waiter)
        with self._lock:
            seen = _LOOKED.get()
            moved = seen is not None and seen[0] == self._number and seen[1] != self._generation
            sleep = not moved and timeout > 0
            if sleep:
                self._waiters[entry] = None
        try:
            if sleep:
                self._woken(await asyncio.wait_for(waiter, timeout))
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.pop(entry, None)
            self.looked()

    def _woken(self, wake: Wake | None) -> None:
        """What a waiter does with the wake-up it was handed."""


class QueueSignal(OutboxSignal):
    """The polling runners' signal: a commit wakes one of them per job it queued."""

    def notify(self, count: int | None = None) -> None:
        """A commit queued `count` jobs (None: it does not say how many)."""
        if count is None:
            super().notify()
            return
        with self._lock:
            self._generation += 1
            waiters = list(self._waiters)
            woken, asleep = waiters[:count], waiters[count:]
            for entry in woken:
                del self._waiters[entry]
        for entry in woken:
            _send(entry, Wake(self, asleep) if asleep else None)

    def _woken(self, wake: Wake | None) -> None:
        if wake is None:
            return
        _WOKEN.set(wake)
        task = asyncio.current_task()
        if task is not None:  # a poll that ends without trying hands its wake-up on
            task.add_done_callback(lambda _: self.pass_on(wake))

    def tried(self, found: bool) -> None:
        """The calling task tried to take a job; without one, its wake-up goes on."""
        wake = _WOKEN.get()
        if wake is None:
            return
        _WOKEN.set(None)
        if found:
            wake.tried = True
        else:
            wake.signal.pass_on(wake)

    def pass_on(self, wake: Wake) -> None:
        """Wake the longest waiting poll that `wake`'s commit left asleep and still waits."""
        if wake.tried:
            return
        wake.tried = True
        with self._lock:
            while wake.asleep:
                entry = wake.asleep.pop(0)
                if entry in self._waiters:  # else woken meanwhile, or done waiting
                    del self._waiters[entry]
                    break
            else:
                return
        _send(entry, Wake(self, wake.asleep) if wake.asleep else None)


def _send(entry: Waiter, wake: Wake | None) -> None:
    loop, waiter = entry
    try:
        loop.call_soon_threadsafe(_wake, waiter, wake)
    except RuntimeError:  # a closed loop: nobody waits there any more
        if wake is not None:
            wake.signal.pass_on(wake)


class Signals:
    """A store's wake-ups: `outbox` for the scheduler, `queue` for polling runners,
    `cancels` for heartbeats held until their job's cancel is asked for.

    A commit wakes only those its events concern: most commits (an
    acquisition, a step's start) concern neither, and a woken poll or
    scheduler costs database round trips for nothing.
    """

    def __init__(self) -> None:
        self.outbox = OutboxSignal()
        self.queue = QueueSignal()
        self.cancels = OutboxSignal()

    @staticmethod
    def flags(events: Collection[tuple[str, str, Mapping[str, Any]]]) -> str:
        """Whom a commit of these events, as (kind, run id, data), concerns: "s" (the
        scheduler, when it leaves it work), "c" (held heartbeats: a running job's cancel
        was asked for), "q<n>" (polling runners, n jobs queued; always last)."""
        scheduler = any(scheduler_work(events))
        cancels = any(kind == EventKind.JOB_CANCEL_REQUESTED for kind, _, _ in events)
        queued = sum(kind in QUEUEING for kind, _, _ in events)
        return (
            ("s" if scheduler else "") + ("c" if cancels else "") + (f"q{queued}" if queued else "")
        )

    def committed(self, flags: str) -> None:
        """Wake whom `flags` names (a commit here, or a notification from elsewhere; a
        bare "q" from a server that did not count wakes every poll)."""
        if "s" in flags:
            self.outbox.notify()
        if "c" in flags:
            self.cancels.notify()
        _, q, count = flags.partition("q")
        if q:
            self.queue.notify(int(count) if count.isdigit() else None)

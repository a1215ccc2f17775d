"""The HTTP `JobReporter`: what happens to a job goes to the server in ordered batches.

The executor never waits on the network: the job's start, each step's start
and end, log lines and the job's end join one ordered queue, and a single
sender task drains it as `report` calls, each applied by the server in one
transaction. A batch goes once its oldest event has waited 100 ms, once 100
lines wait, or at once when the job ends; so a short job takes one call from
its start to its end, and a long one reports at least every 100 ms while it
prints. Step times travel with the events, so the wait does not move them.

Reports are numbered within the lease, and one sent again (the answer was
lost) carries its number again, so the server applies it once. The report
that ends the job asks for the runner's next job while `wants_next` says the
runner takes work; the answer's job is kept as `next_job` for the agent. While the
server is unreachable the sender retries with backoff and the queue keeps
growing, up to a bound: past it the oldest lines go, and a
marker line says how many. A 409 lease_lost ends the reporter at once: the
queue is dropped, `cancel` is set, `on_lost` is told, and nothing more is
sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import LeaseLost
from conveyor.runner.assignment import JobOutcome, StepReport
from conveyor.runner.http_channel import Backoff, HttpChannel, Refused, ServerUnavailable

BATCH_LINES = 100
BATCH_INTERVAL = 0.1
BATCH_CHARS = 1 << 20
"""A batch also ends at this many characters: a few huge lines make one call each."""
MAX_BUFFERED_CHARS = 16 << 20
MAX_BATCH_EVENTS = 1000

logger = logging.getLogger("conveyor.runner")

Line = tuple[int | None, str]


@dataclass
class _Logs:
    """Consecutive log lines between two other events."""

    lines: deque[Line] = field(default_factory=deque)
    dropped: int = 0


class HttpReporter:
    """Reports one job under its lease epoch over an `HttpChannel`."""

    def __init__(
        self,
        channel: HttpChannel,
        job_id: str,
        epoch: int,
        *,
        on_lost: Callable[[str], None] | None = None,
        wants_next: Callable[[], bool] = lambda: False,
        batch_lines: int = BATCH_LINES,
        batch_interval: float = BATCH_INTERVAL,
        max_buffered_chars: int = MAX_BUFFERED_CHARS,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self.cancel = asyncio.Event()
        self._channel = channel
        self._job_id = job_id
        self._epoch = epoch
        self._on_lost = on_lost
        self._wants_next = wants_next
        self._batch_lines = batch_lines
        self._interval = batch_interval
        self._max_chars = max_buffered_chars
        self._backoff = backoff
        self._queue: deque[_Logs | dict[str, Any]] = deque()
        self._oldest = 0.0
        """When the oldest queued event joined the queue (loop time)."""
        self._lines = 0
        self._chars = 0
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._closing = False
        self._ended = False
        self._completed = False
        self._reports = 0
        """How many reports have been sent (each is numbered: the server applies it once)."""
        self.next_job: dict[str, Any] | None = None
        """The runner's next job, handed over in the answer to the job's end."""
        self.next_job_at = 0.0
        """When that answer arrived (monotonic clock): the next job's lease runs from then."""

    @property
    def ended(self) -> bool:
        """Whether the reporter sends nothing more (completed, lost or aborted)."""
        return self._ended

    def job_started(self) -> None:
        self._add({"type": "job_start"})

    async def step_started(self, index: int, step_id: str | None, name: str) -> None:
        event = {"index": index, "step_id": step_id, "name": name, "at": time.time()}
        self._add({"type": "step_start", **event})

    async def step_finished(self, report: StepReport) -> None:
        event = {
            "type": "step_end",
            "index": report.index,
            "step_id": report.step_id,
            "name": report.name,
            "outcome": report.outcome,
            "conclusion": report.conclusion,
            "outputs": dict(report.outputs),
            "at": time.time(),
        }
        if report.restored:
            event["restored"] = True
        self._add(event)

    def log(self, step_index: int | None, line: str) -> None:
        if self._ended or self._closing:
            return
        tail = self._queue[-1] if self._queue else None
        if not isinstance(tail, _Logs):
            tail = _Logs()
            self._add(tail)
        tail.lines.append((step_index, line))
        self._lines += 1
        self._chars += len(line)
        if self._chars > self._max_chars:
            self._drop_oldest()
        if self._lines >= self._batch_lines or self._chars >= BATCH_CHARS:
            self._wake.set()

    async def flush(self) -> None:
        """Nothing to hurry: what is queued goes, in order, before the job's end."""

    async def complete(self, outcome: JobOutcome) -> bool:
        """Send what is queued with the job's end; -> whether the server took the end."""
        if self._ended:
            return False
        end = {"type": "job_end", "conclusion": outcome.conclusion}
        self._add({**end, "outputs": dict(outcome.outputs), "reason": outcome.reason})
        self._closing = True
        self._wake.set()
        assert self._sender is not None
        try:
            await self._sender
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        self._ended = True
        return self._completed

    def abort(self) -> None:
        """Stop at once: drop what is queued and send nothing more."""
        self._ended = True
        self._queue.clear()
        self._lines = self._chars = 0
        self.cancel.set()
        if self._sender is not None and self._sender is not asyncio.current_task():
            self._sender.cancel()

    def _add(self, event: _Logs | dict[str, Any]) -> None:
        if self._ended or self._closing:
            return
        loop = asyncio.get_running_loop()
        if not self._queue:
            self._oldest = loop.time()
            self._wake.set()  # the sender waits without a deadline on an empty queue
        self._queue.append(event)
        if self._sender is None:
            self._sender = loop.create_task(self._send_all())

    def _drop_oldest(self) -> None:
        """Drop the oldest waiting lines until the buffer fits (the newest line stays)."""
        for item in self._queue:
            if not isinstance(item, _Logs):
                continue
            while item.lines and self._chars > self._max_chars:
                if item is self._queue[-1] and len(item.lines) == 1:
                    return
                _, text = item.lines.popleft()
                item.dropped += 1
                self._lines -= 1
                self._chars -= len(text)
            if self._chars <= self._max_chars:
                return

    async def _send_all(self) -> None:
        while not self._ended:
            batch = await self._next_batch()
            if batch is None:
                return
            self._reports += 1
            delivered = await self._deliver(batch, self._reports)
            if batch[-1]["type"] == "job_end":
                self._completed = delivered

    async def _next_batch(self) -> list[dict[str, Any]] | None:
        """The next batch, once it is due; None when closing with nothing left."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            timeout: float | None = None
            if self._queue:
                due = self._oldest + self._interval
                full = self._lines >= self._batch_lines or self._chars >= BATCH_CHARS
                if self._closing or full or loop.time() >= due:
                    return self._take(loop.time())
                timeout = due - loop.time()
            elif self._closing:
                return None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # no task of its own, as wait_for makes
                    await self._wake.wait()

    def _take(self, now: float) -> list[dict[str, Any]]:
        """Events from the head of the queue, within one batch's limits of lines and size."""
        batch: list[dict[str, Any]] = []
        lines = chars = 0
        while self._queue and len(batch) < MAX_BATCH_EVENTS:
            head = self._queue[0]
            if not isinstance(head, _Logs):
                batch.append(head)
                self._queue.popleft()
                continue
            taken: list[Line] = []
            if head.dropped:
                warning = (
                    f"##[warning]{head.dropped} log line(s) dropped here: the server was "
                    "unreachable and the runner's log buffer was full"
                )
                taken.append((None, warning))
                head.dropped = 0
            while head.lines and lines < self._batch_lines and (not lines or chars < BATCH_CHARS):
                line = head.lines.popleft()
                taken.append(line)
                lines += 1
                chars += len(line[1])
            if taken:
                batch.append({"type": "logs", "lines": taken})
            if head.lines:
                break  # the batch is full
            self._queue.popleft()
        self._lines -= lines
        self._chars -= chars
        if self._queue and lines >= self._batch_lines:
            self._oldest = now  # the rest waits its interval; left by a size cap, it is due
        return batch

    async def _deliver(self, batch: list[dict[str, Any]], seq: int) -> bool:
        """Send until the server answers; -> whether it accepted."""
        what = f"a report of {len(batch)} event(s)"
        backoff = self._backoff()
        attempts = 0
        while True:
            attempts += 1
            ending = batch[-1]["type"] == "job_end"
            try:
                answer = await self._channel.report(
                    self._job_id,
                    self._epoch,
                    batch,
                    seq=seq,
                    next_job=ending and self._wants_next(),
                )
            except ServerUnavailable as exc:
                if attempts == 1:
                    logger.warning("job %s: %s; sending %s again later", self._job_id, exc, what)
                await asyncio.sleep(backoff.next())
                continue
            except LeaseLost as exc:
                self._lost(f"the server refused {what}: {exc}")
                return False
            except Refused as exc:
                if exc.code == "conflict" and attempts > 1:
                    return True  # an earlier attempt got through; only its answer was lost
                logger.warning("job %s: the server refused %s: %s", self._job_id, what, exc)
                return False
            if attempts > 1:
                logger.info("job %s: the server is reachable again", self._job_id)
            if answer.job is not None:
                self.next_job, self.next_job_at = answer.job, time.monotonic()
            return True

    def _lost(self, why: str) -> None:
        self.abort()
        if self._on_lost is not None:
            self._on_lost(why)

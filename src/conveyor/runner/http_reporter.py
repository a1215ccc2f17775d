"""The HTTP `JobReporter`: step transitions, log batches and completion, in order, retried.

The executor never waits on the network: every report goes into one ordered
queue that a single sender task drains. Log lines travel in batches, sent
when 100 lines are waiting or the oldest has waited 100 ms, and always
before a step transition that follows them. A step's start waits up to the
same interval for its end: a step that ends within it goes as one `record`
call with its lines (when they fit one batch). While the server is
unreachable the sender retries with backoff and the queue keeps growing, up
to a bound: past it the oldest lines go, and a marker line says how many.

A 409 lease_lost on any write ends the reporter at once: the queue is
dropped, `cancel` is set, `on_lost` is told, and nothing more is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from conveyor.errors import LeaseLost
from conveyor.runner.assignment import JobOutcome, StepReport
from conveyor.runner.http_channel import Backoff, HttpChannel, Refused, ServerUnavailable

BATCH_LINES = 100
BATCH_INTERVAL = 0.1
BATCH_CHARS = 1 << 20
"""A batch also ends at this many characters: a few huge lines make one request each."""
MAX_BUFFERED_CHARS = 16 << 20

logger = logging.getLogger("conveyor.runner")

Line = tuple[int | None, str]


@dataclass
class _Logs:
    """Consecutive log lines between two transitions."""

    first_at: float
    lines: deque[Line] = field(default_factory=deque)
    chars: int = 0
    dropped: int = 0
    sealed: bool = False
    """No more lines join this segment: `flush` asked for it to go now."""


@dataclass
class _Call:
    """One transition or the completion, waiting its turn."""

    what: str
    send: Callable[[], Awaitable[None]]
    delivered: bool = False
    starts: int | None = None
    """The index of the step this call starts."""
    ends: StepReport | None = None
    """The step this call ends."""
    queued_at: float = 0.0


class HttpReporter:
    """Reports one job under its lease epoch over an `HttpChannel`."""

    def __init__(
        self,
        channel: HttpChannel,
        job_id: str,
        epoch: int,
        *,
        on_lost: Callable[[str], None] | None = None,
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
        self._batch_lines = batch_lines
        self._interval = batch_interval
        self._max_chars = max_buffered_chars
        self._backoff = backoff
        self._queue: deque[_Logs | _Call] = deque()
        self._buffered = 0
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._closing = False
        self._ended = False

    @property
    def ended(self) -> bool:
        """Whether the reporter sends nothing more (completed, lost or aborted)."""
        return self._ended

    async def step_started(self, index: int, step_id: str | None, name: str) -> None:
        send = partial(self._channel.step_started, self._job_id, self._epoch, index, step_id, name)
        now = asyncio.get_running_loop().time()
        self._enqueue(_Call(f"the start of step {index}", send, starts=index, queued_at=now))

    async def step_finished(self, report: StepReport) -> None:
        send = partial(self._channel.step_finished, self._job_id, self._epoch, report)
        self._enqueue(_Call(f"the end of step {report.index}", send, ends=report))

    def log(self, step_index: int | None, line: str) -> None:
        if self._ended or self._closing:
            return
        tail = self._queue[-1] if self._queue else None
        if not isinstance(tail, _Logs) or tail.sealed:
            tail = _Logs(first_at=asyncio.get_running_loop().time())
            self._queue.append(tail)
            self._kick()
        tail.lines.append((step_index, line))
        tail.chars += len(line)
        self._buffered += len(line)
        if self._buffered > self._max_chars:
            self._drop_oldest()
        if len(tail.lines) >= self._batch_lines or tail.chars >= BATCH_CHARS:
            self._kick()

    async def flush(self) -> None:
        """Send the waiting lines now (without waiting for them to arrive)."""
        self._seal()
        self._kick()

    async def complete(self, outcome: JobOutcome) -> bool:
        """Send what is queued, then the job's end; -> whether the server took the end."""
        if self._ended:
            return False
        send = partial(self._channel.complete, self._job_id, self._epoch, outcome)
        call = _Call("the job's completion", send)
        self._enqueue(call)
        self._closing = True
        self._kick()
        assert self._sender is not None
        try:
            await self._sender
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        self._ended = True
        return call.delivered

    def abort(self) -> None:
        """Stop at once: drop what is queued and send nothing more."""
        self._ended = True
        self._queue.clear()
        self._buffered = 0
        self.cancel.set()
        if self._sender is not None and self._sender is not asyncio.current_task():
            self._sender.cancel()

    def _enqueue(self, call: _Call) -> None:
        if self._ended or self._closing:
            return
        self._seal()
        self._queue.append(call)
        self._kick()

    def _seal(self) -> None:
        """Close the open log segment (only the last one can be open)."""
        if self._queue and isinstance(self._queue[-1], _Logs):
            self._queue[-1].sealed = True

    def _kick(self) -> None:
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_all())
        self._wake.set()

    def _drop_oldest(self) -> None:
        """Drop the oldest waiting lines until the buffer fits (the newest line stays)."""
        for item in self._queue:
            if not isinstance(item, _Logs):
                continue
            while item.lines and self._buffered > self._max_chars:
                if item is self._queue[-1] and len(item.lines) == 1:
                    return
                _, text = item.lines.popleft()
                item.chars -= len(text)
                item.dropped += 1
                self._buffered -= len(text)
            if self._buffered <= self._max_chars:
                return

    async def _send_all(self) -> None:
        while not self._ended:
            item = await self._next()
            if item is None:
                return
            if isinstance(item, _Call):
                item.delivered = await self._deliver(item.what, item.send)
            else:
                send = partial(self._channel.append_logs, self._job_id, self._epoch, item)
                await self._deliver(f"{len(item)} log line(s)", send)

    async def _next(self) -> _Call | list[Line] | None:
        """The next thing to send, once it is due; None when closing with nothing left."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            timeout: float | None = None
            if self._queue:
                head = self._queue[0]
                if isinstance(head, _Call) and head.starts is not None:
                    mergeable, logs, end = self._rest_of_step(head.starts)
                    if end is not None:
                        return self._record(logs, end)
                    due = head.queued_at + self._interval
                    if not mergeable or self._closing or loop.time() >= due:
                        self._queue.popleft()
                        return head
                    timeout = due - loop.time()
                elif isinstance(head, _Call):
                    self._queue.popleft()
                    return head
                else:
                    due = head.first_at + self._interval
                    if (
                        head.sealed
                        or self._closing
                        or len(head.lines) >= self._batch_lines
                        or head.chars >= BATCH_CHARS
                        or loop.time() >= due
                    ):
                        return self._take(head, loop.time())
                    timeout = due - loop.time()
            elif self._closing:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _rest_of_step(self, index: int) -> tuple[bool, _Logs | None, StepReport | None]:
        """What follows step `index`'s queued start: whether they may still merge, lines, end.

        They merge into one `record` when the lines in between fit one batch
        and the step's end comes right after them.
        """
        following = list(itertools.islice(self._queue, 1, 3))
        logs: _Logs | None = None
        if following and isinstance(following[0], _Logs):
            logs = following[0]
            following = following[1:]
        if logs is not None and (
            logs.dropped or len(logs.lines) >= self._batch_lines or logs.chars >= BATCH_CHARS
        ):
            return False, None, None
        if not following:
            return True, logs, None
        end = following[0]
        if isinstance(end, _Call) and end.ends is not None and end.ends.index == index:
            return True, logs, end.ends
        return False, None, None

    def _record(self, logs: _Logs | None, end: StepReport) -> _Call:
        """Take the queued start, lines and end of one step as a single call."""
        self._queue.popleft()
        lines: list[Line] = []
        if logs is not None:
            self._queue.popleft()
            lines = list(logs.lines)
            self._buffered -= logs.chars
        self._queue.popleft()
        send = partial(self._channel.step_recorded, self._job_id, self._epoch, end, lines)
        return _Call(f"step {end.index} with {len(lines)} log line(s)", send)

    def _take(self, head: _Logs, now: float) -> list[Line]:
        batch: list[Line] = []
        if head.dropped:
            batch.append(
                (
                    None,
                    f"##[warning]{head.dropped} log line(s) dropped here: the server was "
                    "unreachable and the runner's log buffer was full",
                )
            )
            head.dropped = 0
        chars = 0
        while head.lines and len(batch) < self._batch_lines and (not batch or chars < BATCH_CHARS):
            line = head.lines.popleft()
            batch.append(line)
            chars += len(line[1])
        head.chars -= chars
        self._buffered -= chars
        head.first_at = now
        if not head.lines:
            self._queue.popleft()
        return batch

    async def _deliver(self, what: str, send: Callable[[], Awaitable[None]]) -> bool:
        """Send until the server answers; -> whether it accepted."""
        backoff = self._backoff()
        attempts = 0
        while True:
            attempts += 1
            try:
                await send()
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
            return True

    def _lost(self, why: str) -> None:
        self.abort()
        if self._on_lost is not None:
            self._on_lost(why)

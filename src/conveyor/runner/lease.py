"""One acquired job under its lease: start, heartbeats, the deadline, completion or abandon.

The runner's half of DESIGN.md's guarantee 3 (one live executor):

- the lease runs from the poll answer that carried the job; each heartbeat
  the server acknowledges renews it from the moment that heartbeat was
  *sent* (the server renewed it no earlier);
- when no renewal has been acknowledged for TTL − margin on the monotonic
  clock, the job is abandoned before the server can give it to another
  runner; the lease guard process does the same if this process is frozen
  or dead (see guard.py);
- a 409 lease_lost on any write abandons the job at once.

Abandoning kills the job's processes (cancelling the executor's task kills
the running step's process group; the guard kills every marked process)
and sends nothing more: the server's reaper decides what happens next.
A cancel asked for by the server or by a stopping runner is different:
the executor cancels the steps in GitHub's way and the job completes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from conveyor.errors import ConveyorError, LeaseLost
from conveyor.runner.assignment import CompletedStep, JobAssignment, JobOutcome
from conveyor.runner.executor import JobExecutor
from conveyor.runner.guard import Guard
from conveyor.runner.http_artifacts import HttpArtifactStore
from conveyor.runner.http_channel import Backoff, HttpChannel, Refused, ServerUnavailable
from conveyor.runner.http_reporter import HttpReporter
from conveyor.runner.workspace import Slots
from conveyor.workflow import parse_workflow

MAX_MARGIN = 30.0
MIN_HEARTBEAT_TIMEOUT = 5.0
FIRST_BEAT = 1.0
"""Seconds into a job when its first heartbeat goes (or one interval, if shorter): the
server holds each heartbeat's answer for an interval unless the job's cancel is asked
for, so from then on a cancel arrives at once. Most short jobs end before."""

logger = logging.getLogger("conveyor.runner")


def lease_margin(ttl: float) -> float:
    """How long before the server's expiry the runner gives a job up: TTL/4, at most 30 s."""
    return min(ttl / 4, MAX_MARGIN)


class LeaseClock:
    """The moment the runner must give the job up, on its monotonic clock."""

    def __init__(
        self, ttl: float, granted_at: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.deadline = granted_at + ttl - lease_margin(ttl)
        self._clock = clock

    def renewed(self, sent_at: float, ttl: float) -> None:
        """A renewal sent at `sent_at` was acknowledged: the lease runs `ttl` from then."""
        self.ttl = ttl
        self.deadline = max(self.deadline, sent_at + ttl - lease_margin(ttl))

    def remaining(self) -> float:
        return self.deadline - self._clock()


class LeaseJob:
    """Runs one assignment to its end under the lease that came with it."""

    def __init__(
        self,
        channel: HttpChannel,
        guard: Guard,
        data: Mapping[str, Any],
        *,
        slots: Slots,
        received_at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wants_next: Callable[[], bool] = lambda: False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.data = data
        self._environ = os.environ if environ is None else environ
        """What the job's processes start from (the agent's own environment, read once:
        each read of os.environ decodes every variable again)."""
        self.job_id = str(data.get("job_id") or "")
        epoch = data.get("epoch")
        self.epoch = epoch if isinstance(epoch, int) else 0
        ttl = _positive(data.get("lease_ttl"), 600.0)
        self.heartbeat_interval = _positive(data.get("heartbeat_interval"), 60.0)
        self.lease = LeaseClock(ttl, clock() if received_at is None else received_at, clock=clock)
        self.aborted = False
        self._channel = channel
        self._guard = guard
        self._slots = slots
        self._clock = clock
        self._marker = secrets.token_hex(12)
        self._reporter = HttpReporter(
            channel, self.job_id, self.epoch, on_lost=self.abort, wants_next=wants_next
        )
        self._task: asyncio.Task[JobOutcome] | None = None
        self._watching: asyncio.TimerHandle | None = None
        """The timer that looks at the lease next (see `_watch`)."""
        self._beats: asyncio.Task[None] | None = None
        self._stop_reason: str | None = None
        self._finishing = False
        self._left_killed = False
        """Whether the guard was told to kill what the job left, once its executor ended."""

    @property
    def next_job(self) -> tuple[Mapping[str, Any], float] | None:
        """The runner's next job, handed over with the answer to this one's end, and when
        that answer arrived; the runner must run it (it is leased already)."""
        if self._reporter.next_job is None:
            return None
        return self._reporter.next_job, self._reporter.next_job_at

    def cancel(self, reason: str | None = None) -> None:
        """Cancel the steps as a user's cancel would; the job still completes."""
        if reason:
            self._stop_reason = reason
        self._reporter.cancel.set()

    def abort(self, why: str) -> None:
        """Give the job up now: kill its processes and send nothing more for it."""
        if self.aborted:
            return
        self.aborted = True
        logger.warning("job %s: %s; abandoning it", self.job_id, why)
        self._reporter.abort()
        if self._task is not None:
            self._task.cancel()
        self._guard.kill(self._marker)

    async def run(self) -> None:
        if not self.job_id:
            logger.error("the server sent a job without a job_id; ignoring it")
            return
        self._guard.watch(self._marker, self.lease.deadline)
        self._watch()  # gives up at once a job whose lease ran out before it arrived
        # The heartbeats' task starts when the first one is due: most jobs end before.
        first = asyncio.get_running_loop().call_later(
            min(FIRST_BEAT, self.heartbeat_interval), self._start_beats
        )
        try:
            if not self.aborted:
                await self._run()
        finally:
            if self._watching is not None:
                self._watching.cancel()
            first.cancel()
            if self._beats is not None:
                self._beats.cancel()
                await asyncio.wait([self._beats])
            if not self._left_killed:  # what the job left running, wherever it went
                self._guard.kill(self._marker)

    async def _run(self) -> None:
        try:
            assignment = build_assignment(self.data)
        except ConveyorError as exc:
            logger.error("job %s: %s", self.job_id, exc)
            await self._complete(JobOutcome("failure", {}, reason=str(exc)))
            return
        self._reporter.job_started()  # goes with the first report, at most 100 ms from now
        logger.info("job %s (%s): started", self.job_id, assignment.name)
        executor = JobExecutor(
            slots=self._slots,
            base_env=self._environ,
            marker=self._marker,
            artifacts=HttpArtifactStore(self._channel, self.job_id, self.epoch, on_lost=self.abort),
        )
        self._task = asyncio.create_task(executor.run(assignment, self._reporter))
        try:
            outcome = await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self.aborted or (current is not None and current.cancelling()):
                raise
            return
        except Exception as exc:  # a bug in a step must not take the runner down
            logger.error("job %s: the executor failed", self.job_id, exc_info=True)
            outcome = JobOutcome("failure", {}, reason=f"the runner failed: {exc}")
        # What the steps left running goes now, not after the report: the job's
        # directory tree goes back to the pool (see workspace.Slots).
        self._guard.kill(self._marker)
        self._left_killed = True
        if self._stop_reason and outcome.conclusion == "cancelled":
            outcome = replace(outcome, reason=self._stop_reason)
        await self._complete(outcome)

    async def _complete(self, outcome: JobOutcome) -> None:
        self._finishing = True
        if await self._reporter.complete(outcome):
            logger.info("job %s: %s", self.job_id, outcome.conclusion)

    def _watch(self) -> None:
        """Abandon the job when the lease runs out without an acknowledged renewal; else
        look again when it would (a timer, not a task: one fewer per job)."""
        self._watching = None
        if self.aborted:
            return
        remaining = self.lease.remaining()
        if remaining <= 0:
            quiet = self.lease.ttl - lease_margin(self.lease.ttl)
            self.abort(f"no lease renewal acknowledged for {quiet:.1f} s")
            return
        self._watching = asyncio.get_running_loop().call_later(remaining, self._watch)

    def _start_beats(self) -> None:
        self._beats = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        """Renew the lease now, then every heartbeat interval; pass a server-side cancel on.

        Each heartbeat asks the server to hold its answer for an interval (it renews
        the lease on arrival), or less, so that the answer comes with an interval of
        the lease to spare (a renewal counts from when it was sent). The next one goes
        when the answer comes, or when an interval has passed since the last was sent,
        whichever is later.
        """
        interval = self.heartbeat_interval
        backoff = Backoff(cap=interval)
        failing = False
        pause = 0.0
        while not self.aborted:
            await asyncio.sleep(pause)
            sent = self._clock()
            wait = max(0.0, min(interval, self.lease.remaining() - interval))
            try:
                beat = await self._channel.heartbeat(
                    self.job_id,
                    self.epoch,
                    wait=wait,
                    timeout=interval + max(interval, MIN_HEARTBEAT_TIMEOUT),
                )
            except ServerUnavailable as exc:
                if not failing:
                    logger.warning("job %s: heartbeat failed: %s", self.job_id, exc)
                failing = True
                pause = backoff.next()
                continue
            except (LeaseLost, Refused) as exc:
                if not self._finishing:  # after completion the lease is gone by design
                    self.abort(f"the server refused its heartbeat: {exc}")
                return
            failing = False
            backoff.reset()
            pause = max(0.0, interval - (self._clock() - sent))
            self.lease.renewed(sent, beat.lease_ttl)
            self._guard.watch(self._marker, self.lease.deadline)
            if beat.cancel_requested and not self._reporter.cancel.is_set():
                logger.info("job %s: cancel requested", self.job_id)
                self._reporter.cancel.set()


def build_assignment(data: Mapping[str, Any]) -> JobAssignment:
    """The executor's `JobAssignment` from the server's ASSIGNMENT JSON."""
    try:
        path, source = str(data["workflow"]["path"]), str(data["workflow"]["source"])
        key = str(data["job"])
        workflow = parse_workflow(path, source)
        job = workflow.jobs.get(key)
        if job is None:
            raise ConveyorError(f"the workflow {path} has no job {key!r}")
        checkout = data.get("checkout")
        return JobAssignment(
            job_id=str(data["job_id"]),
            epoch=int(data["epoch"]),
            key=key,
            name=str(data.get("name") or key),
            workflow=workflow,
            job=job,
            source_dir=None,
            matrix=data.get("matrix") or None,
            contexts=dict(data.get("contexts") or {}),
            secrets={str(k): str(v) for k, v in (data.get("secrets") or {}).items()},
            idempotency_base=str(data.get("idempotency_base") or ""),
            checkout={str(k): str(v) for k, v in checkout.items()} if checkout else None,
            completed_steps=_completed_steps(data.get("completed_steps") or ()),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConveyorError(f"the assignment is malformed ({type(exc).__name__}: {exc})") from None


def _completed_steps(entries: Iterable[Mapping[str, Any]]) -> dict[int, CompletedStep]:
    return {
        int(entry["index"]): CompletedStep(
            int(entry["epoch"]), {str(k): str(v) for k, v in entry["outputs"].items()}
        )
        for entry in entries
    }


def _positive(raw: Any, default: float) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0:
        return float(raw)
    return default

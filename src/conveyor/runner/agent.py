"""`conveyor runner`: long-poll the server for jobs and run each one under its lease.

The listener polls only while it has a free slot, and a job starts only once
the poll's answer (the acquisition) has arrived. Each job runs in the same
`JobExecutor` as `conveyor run`, in a fresh workspace under the work
directory, with heartbeats in the background (see `LeaseJob`).

SIGTERM or SIGINT stops the polling; running jobs get `grace` seconds to
finish, then are cancelled as a user's cancel would (GitHub's signal
sequence, `if: always()` steps still run); a second signal abandons them at
once. While the server is unreachable every call is retried with capped
backoff; the agent itself never gives up on an unreachable server.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

from conveyor.errors import ConveyorError
from conveyor.runner.guard import Guard
from conveyor.runner.http_channel import (
    Backoff,
    ChannelError,
    HttpChannel,
    Refused,
    ServerUnavailable,
)
from conveyor.runner.lease import LeaseJob
from conveyor.runner.workspace import Slots

POLL_WAIT = 50.0
CREDENTIALS = "runner.json"
GRACE = 60.0
REUSE_AFTER = 1.0
"""Seconds at most before a job's directory tree serves another job, when the lease
guard has not said sooner that the job's processes are gone: time enough for it to
kill them (it starts within guard.KILL_DELAY, and its rounds take ROUNDS x PAUSE more,
plus their scans)."""
_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64", "i686": "x86"}
_HOSTED = {"linux": "ubuntu-latest", "darwin": "macos-latest"}

logger = logging.getLogger("conveyor.runner")
T = TypeVar("T")


def default_labels() -> list[str]:
    """The labels of every runner: `self-hosted`, its OS and architecture, as on GitHub.

    Also the hosted-image label of its OS (`ubuntu-latest` on Linux), so that
    workflows written for GitHub-hosted runners run here unchanged.
    """
    system = platform.system().lower()
    labels = ["self-hosted", {"darwin": "macos"}.get(system, system)]
    machine = platform.machine().lower()
    labels.append(_ARCH.get(machine, machine))
    if system in _HOSTED:
        labels.append(_HOSTED[system])
    return labels


async def register(
    url: str, registration_token: str, name: str, labels: Sequence[str]
) -> tuple[str, str]:
    """Register a runner; -> (runner id, runner token). Raises ChannelError or its kinds."""
    channel = HttpChannel(url, registration_token)
    try:
        return await channel.register(name, labels)
    finally:
        await channel.aclose()


async def run_agent(
    url: str,
    token: str,
    labels: Sequence[str],
    *,
    workdir: str,
    concurrency: int = 1,
    name: str | None = None,
    grace: float = GRACE,
    stop: asyncio.Event | None = None,
    poll_wait: float = POLL_WAIT,
) -> int:
    """Run the agent until SIGTERM/SIGINT (or `stop`); -> exit status.

    The runner answers to `labels` and `default_labels()`. `token` is a
    registration token (the agent registers once and keeps its runner token
    in `workdir`, mode 0600) or a runner token. With `stop` given, no signal
    handlers are installed (for an agent embedded in another program):
    setting it stops the agent as SIGTERM would. Exit status 0 after a stop,
    1 when the server refuses the token, 2 when the arguments cannot be used.
    """
    if concurrency < 1:
        logger.error("--concurrency must be at least 1, not %d", concurrency)
        return 2
    workdir = os.path.abspath(workdir)  # steps run elsewhere and must find their scripts
    try:
        os.makedirs(os.path.join(workdir, "jobs"), exist_ok=True)
        lock = _lock(workdir)
    except (OSError, ConveyorError) as exc:
        logger.error("cannot use work directory %s: %s", workdir, exc)
        return 2
    agent = _Agent(
        url,
        token,
        list(dict.fromkeys([*default_labels(), *(label.lower() for label in labels)])),
        workdir=workdir,
        concurrency=concurrency,
        name=name or socket.gethostname(),
        grace=grace,
        stop=stop or asyncio.Event(),
        poll_wait=poll_wait,
    )
    loop = asyncio.get_running_loop()
    handled = () if stop is not None else (signal.SIGTERM, signal.SIGINT)
    for sig in handled:
        loop.add_signal_handler(sig, agent.on_signal)
    try:
        return await agent.run()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        lock.close()


def _lock(workdir: str) -> TextIO:
    """Hold the work directory for this process (the kernel frees it however we end)."""
    handle = open(os.path.join(workdir, "agent.lock"), "w")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConveyorError("another runner is using it") from None
    return handle


@dataclass(frozen=True)
class Credentials:
    """What registration gave this work directory, and for which server, name and labels."""

    url: str
    runner_id: str
    token: str
    name: str
    labels: tuple[str, ...]

    def fits(self, url: str, name: str, labels: Sequence[str]) -> bool:
        return (self.url, self.name, self.labels) == (url, name, tuple(labels))


def load_credentials(workdir: str) -> Credentials | None:
    try:
        with open(os.path.join(workdir, CREDENTIALS), encoding="utf-8") as f:
            data = json.load(f)
        return Credentials(
            str(data["url"]),
            str(data["runner_id"]),
            str(data["token"]),
            str(data["name"]),
            tuple(str(label) for label in data["labels"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring %s: %s", os.path.join(workdir, CREDENTIALS), exc)
        return None


def save_credentials(workdir: str, credentials: Credentials) -> None:
    """Write the credentials file, readable by its owner only, atomically."""
    path = os.path.join(workdir, CREDENTIALS)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({**credentials.__dict__, "labels": list(credentials.labels)}, f)
    os.replace(path + ".tmp", path)


class _Agent:
    def __init__(
        self,
        url: str,
        token: str,
        labels: list[str],
        *,
        workdir: str,
        concurrency: int,
        name: str,
        grace: float,
        stop: asyncio.Event,
        poll_wait: float,
    ) -> None:
        self.url = url.rstrip("/")
        self.given_token = token
        self.labels = labels
        self.workdir = workdir
        self.concurrency = concurrency
        self.name = name
        self.grace = grace
        self.stop = stop
        self.poll_wait = poll_wait
        self.jobs: dict[asyncio.Task[None], LeaseJob] = {}
        self.signals = 0
        self.environ = dict(os.environ)
        """The jobs' starting environment, read once (see LeaseJob)."""

    def on_signal(self) -> None:
        self.signals += 1
        if self.signals == 1:
            logger.info("stopping: no new jobs; running jobs have %.0f s to finish", self.grace)
            self.stop.set()
        else:
            logger.warning("stopping now: abandoning %d running job(s)", len(self.jobs))
            for job in self.jobs.values():
                job.abort("the runner was stopped")

    async def run(self) -> int:
        try:
            token = await self._token()
        except Refused as exc:
            logger.error("the server refused the token: %s", exc)
            return 1
        except ChannelError as exc:
            logger.error("%s", exc)
            return 2
        if token is None:
            return 0
        jobs_dir = os.path.join(self.workdir, "jobs")
        for leftover in os.listdir(jobs_dir):  # from a runner that died mid-job
            shutil.rmtree(os.path.join(jobs_dir, leftover), ignore_errors=True)
        channel = HttpChannel(self.url, token)
        slots = Slots(jobs_dir, reuse_after=REUSE_AFTER)
        guard = await Guard.start(on_gone=slots.gone)
        try:
            logger.info(
                "runner %s: waiting for jobs from %s (labels: %s, %d at a time)",
                self.name,
                self.url,
                ",".join(self.labels) or "none",
                self.concurrency,
            )
            status = await self._listen(channel, guard, slots)
            await self._drain()
            return status
        finally:
            for task, job in self.jobs.items():
                job.abort("the runner is stopping")
                task.cancel()
            if self.jobs:
                await asyncio.wait(self.jobs)
            slots.close()
            await guard.close()
            await channel.aclose()

    async def _token(self) -> str | None:
        """The runner token: saved, newly registered, or the given one. None when stopped."""
        saved = load_credentials(self.workdir)
        if saved is not None and saved.fits(self.url, self.name, self.labels):
            return saved.token
        try:
            registered = await self._until_stopped(
                lambda: register(self.url, self.given_token, self.name, self.labels)
            )
        except Refused as exc:
            if exc.status == 403:  # a runner token, given as it is
                return self.given_token
            if saved is not None and saved.url == self.url:
                logger.warning(
                    "cannot register again (%s); keeping runner %s", exc, saved.runner_id
                )
                return saved.token
            raise
        if registered is None:
            return None
        runner_id, token = registered
        save_credentials(
            self.workdir, Credentials(self.url, runner_id, token, self.name, tuple(self.labels))
        )
        logger.info("registered as runner %s", runner_id)
        return token

    async def _listen(self, channel: HttpChannel, guard: Guard, slots: Slots) -> int:
        free = asyncio.Semaphore(self.concurrency)
        while not self.stop.is_set():
            if await self._wait_or_stop(free.acquire()) is None:
                break
            try:
                data = await self._poll(channel)
            except Refused as exc:
                free.release()
                logger.error("the server refused to hand out jobs: %s", exc)
                if exc.status == 401:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(self.workdir, CREDENTIALS))
                return 1
            if data is None:
                free.release()
                continue
            self._start(channel, guard, slots, data, time.monotonic(), free)
        return 0

    async def _poll(self, channel: HttpChannel) -> dict[str, Any] | None:
        """A job, or None; a poll whose answer was lost goes again under its name, so
        that the job it may have leased is handed to us again, not left to its lease."""
        request = secrets.token_urlsafe(12)
        asked = False

        async def ask() -> dict[str, Any] | None:
            nonlocal asked
            again, asked = asked, True
            return await channel.poll(self.poll_wait, request=request, again=again)

        return await self._until_stopped(ask)

    def _start(
        self,
        channel: HttpChannel,
        guard: Guard,
        slots: Slots,
        data: Mapping[str, Any],
        received_at: float,
        free: asyncio.Semaphore,
    ) -> None:
        """Run a job in a slot of `free`; the slot goes to the job handed over with its end's
        answer (asked for while the runner takes work), else back to the listener."""
        job = LeaseJob(
            channel,
            guard,
            data,
            slots=slots,
            received_at=received_at,
            wants_next=lambda: not self.stop.is_set(),
            environ=self.environ,
        )
        task = asyncio.create_task(job.run())
        self.jobs[task] = job

        def done(task: asyncio.Task[None]) -> None:
            self.jobs.pop(task, None)
            handed = job.next_job
            if handed is None:
                free.release()
            else:  # leased to us already: it runs even if the runner is stopping now
                logger.info(
                    "job %s: handed over with the end of job %s",
                    handed[0].get("job_id"),
                    job.job_id,
                )
                self._start(channel, guard, slots, *handed, free)

        task.add_done_callback(done)

    async def _drain(self) -> None:
        """Let running jobs (and any handed over meanwhile) finish within the grace period,
        then cancel them."""
        deadline = time.monotonic() + self.grace
        while self.jobs:
            remaining = max(deadline - time.monotonic(), 0)
            _, late = await asyncio.wait(list(self.jobs), timeout=remaining)
            for task in late:
                job = self.jobs.get(task)
                if job is not None:
                    logger.warning("job %s: cancelled: the runner is stopping", job.job_id)
                    job.cancel(reason="the runner was stopped before the job finished")
            if late:
                await asyncio.wait(late)

    async def _until_stopped(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """`await call()` until it gets an answer, retrying an unreachable server; None if stopped."""
        backoff = Backoff()
        failing = False
        while not self.stop.is_set():
            try:
                result = await self._wait_or_stop(call())
            except ServerUnavailable as exc:
                if not failing:
                    logger.warning("%s; retrying with backoff", exc)
                failing = True
                await self._wait_or_stop(asyncio.sleep(backoff.next()))
                continue
            if failing:
                logger.info("the server is reachable again")
            return result
        return None

    async def _wait_or_stop(self, awaitable: Awaitable[T]) -> T | None:
        """The awaitable's result, or None (and it is cancelled) when the agent stops first."""
        task = asyncio.ensure_future(awaitable)
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if task.done():
            return task.result()  # a job acquired just as the stop came is still run
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None

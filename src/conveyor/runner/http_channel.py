"""The runner's end of the runner protocol: one method per endpoint, errors translated.

Every failure leaves as one of three errors, which decide what the caller does:

ConveyorError
 ├── ChannelError
 │    ├── ServerUnavailable   no answer, a timeout, a 5xx: try again later
 │    └── Refused             a 4xx the runner cannot fix by retrying (.status, .code)
 └── StoreError
      └── Conflict
           └── LeaseLost      409 lease_lost: the job belongs to someone else now

`Backoff` is the retry policy the agent and the reporter share.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote

import httpx

from conveyor.errors import ConveyorError, LeaseLost
from conveyor.runner.wire import JsonClient, WireError

API = "/api/v1"
REQUEST_TIMEOUT = 30.0
USER_AGENT = "conveyor-runner"
POLL_SLACK = 15.0
"""How much longer than the requested wait a poll may take before it counts as lost."""


class ChannelError(ConveyorError):
    """A runner protocol call failed."""


class ServerUnavailable(ChannelError):
    """The server could not be reached or failed to answer; the call may be retried."""


class Refused(ChannelError):
    """The server refused the call for good (a 4xx other than lease_lost)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(f"{message} ({status} {code})")


@dataclass(frozen=True)
class Heartbeat:
    """The server's answer to a lease renewal."""

    cancel_requested: bool
    lease_ttl: float


@dataclass(frozen=True)
class Reported:
    """The server's answer to a report."""

    last_seq: int | None
    """The seq of the report's last log line, if it had any."""
    job: dict[str, Any] | None = None
    """The runner's next job (now leased to it), when the report asked and one was queued."""


class Backoff:
    """Exponential delays with jitter, capped: 0.25 s, ~0.5 s, ~1 s, ... up to `cap`.

    Each delay lies in [d/2, d] for the nominal d, so that runners cut off
    together do not return together.
    """

    def __init__(
        self,
        initial: float = 0.25,
        cap: float = 30.0,
        *,
        factor: float = 2.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._cap = cap
        self._initial = min(initial, cap)
        self._factor = factor
        self._jitter = jitter
        self._nominal = self._initial

    def next(self) -> float:
        """The delay before the next attempt; each call lengthens the one after."""
        nominal = self._nominal
        self._nominal = min(self._cap, nominal * self._factor)
        return nominal / 2 + self._jitter() * nominal / 2

    def reset(self) -> None:
        """After a success: the next failure waits the initial delay again."""
        self._nominal = self._initial


class HttpChannel:
    """Runner protocol calls, authenticated by a bearer token.

    The JSON calls go through `wire.JsonClient` (kept connections, little CPU);
    artifact transfers, which stream, through httpx.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        base = url.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ChannelError(f"server URL {url!r} must start with http:// or https://")
        self.url = base
        self._timeout = timeout
        self._auth = {"Authorization": f"Bearer {token}"}
        try:
            self._wire = JsonClient(base + API, {**self._auth, "User-Agent": USER_AGENT})
        except ValueError as exc:
            raise ChannelError(f"server URL {url!r}: {exc}") from None
        self._streams: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        await self._wire.aclose()
        if self._streams is not None:
            await self._streams.aclose()

    def _stream_client(self) -> httpx.AsyncClient:
        """The client for artifact transfers, which stream (made on first use)."""
        if self._streams is None:
            self._streams = httpx.AsyncClient(
                base_url=self.url + API, headers=self._auth, timeout=self._timeout
            )
        return self._streams

    async def register(self, name: str, labels: Sequence[str]) -> tuple[str, str]:
        """Trade the registration token this channel holds for (runner id, runner token)."""
        data = await self._call("POST", "/runners/register", {"name": name, "labels": list(labels)})
        return _text(data, "runner_id"), _text(data, "token")

    async def poll(
        self, wait: float, *, request: str | None = None, again: bool = False
    ) -> dict[str, Any] | None:
        """Wait up to `wait` seconds for a job; -> its assignment (now leased to us) or None.

        `request` names the poll; `again` says the last poll of that name got no answer,
        so that a job it leased is handed again rather than left to its lease's end.
        """
        body: dict[str, Any] = {"wait": wait}
        if request is not None:
            body.update(request=request, again=again)
        data = await self._call("POST", "/runners/poll", body, timeout=wait + POLL_SLACK)
        job = data.get("job")
        if job is not None and not isinstance(job, dict):
            raise ServerUnavailable(f"{self.url}: the poll answer's job is not an object")
        return job

    async def heartbeat(
        self, job_id: str, epoch: int, *, wait: float = 0.0, timeout: float | None = None
    ) -> Heartbeat:
        """Renew the lease; the server may hold its answer up to `wait` seconds, until
        the job's cancel is asked for."""
        body = {"epoch": epoch, "wait": wait} if wait > 0 else {"epoch": epoch}
        data = await self._call("POST", f"{_job(job_id)}/heartbeat", body, timeout=timeout)
        ttl = data.get("lease_ttl")
        if not isinstance(ttl, int | float) or isinstance(ttl, bool) or ttl <= 0:
            raise ServerUnavailable(f"{self.url}: the heartbeat answer has no valid lease_ttl")
        return Heartbeat(bool(data.get("cancel_requested")), float(ttl))

    async def report(
        self,
        job_id: str,
        epoch: int,
        events: Sequence[Mapping[str, Any]],
        *,
        seq: int | None = None,
        next_job: bool = False,
    ) -> Reported:
        """Send a batch of the job's events, numbered `seq` within the lease (the same
        number when it is sent again); with `next_job` (a batch that ends the job), ask
        for the runner's next job in the answer, as a poll would."""
        body: dict[str, Any] = {"epoch": epoch, "events": list(events)}
        if seq is not None:
            body["seq"] = seq
        if next_job:
            body["next"] = True
        data = await self._call("POST", f"{_job(job_id)}/report", body)
        last, job = data.get("last_seq"), data.get("job")
        if job is not None and not isinstance(job, dict):
            raise ServerUnavailable(f"{self.url}: the report answer's job is not an object")
        return Reported(last if isinstance(last, int) else None, job)

    async def put_artifact(
        self, job_id: str, epoch: int, name: str, tar: IO[bytes], size: int
    ) -> int:
        """Upload a tar stream as artifact `name`; -> the size the server stored."""
        path = f"{_job(job_id)}/artifacts/{quote(name, safe='')}"
        headers = {"Content-Type": "application/x-tar", "Content-Length": str(size)}
        try:
            response = await self._stream_client().put(
                path, params={"epoch": epoch}, content=_chunks(tar), headers=headers
            )
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"{self.url}: {_describe(exc)}") from None
        data = _json_object(response.status_code, response.content, self.url, path)
        stored = data.get("size")
        return stored if isinstance(stored, int) else size

    async def list_artifacts(self, job_id: str) -> list[str]:
        data = await self._call("GET", f"{_job(job_id)}/artifacts")
        items = data.get("artifacts")
        if not isinstance(items, list):
            raise ServerUnavailable(f"{self.url}: the artifact list is not a list")
        return [str(item["name"]) for item in items if isinstance(item, dict) and "name" in item]

    async def get_artifact(self, job_id: str, name: str, sink: IO[bytes]) -> None:
        """Write artifact `name`'s tar stream into `sink`."""
        path = f"{_job(job_id)}/artifacts/{quote(name, safe='')}"
        try:
            async with self._stream_client().stream("GET", path) as response:
                if response.status_code != 200:
                    await response.aread()
                    _check(response.status_code, response.content, self.url, path)
                async for chunk in response.aiter_bytes():
                    sink.write(chunk)
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"{self.url}: {_describe(exc)}") from None

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        payload = None if body is None else json.dumps(body).encode()
        try:
            answer = await self._wire.request(
                method, path, payload, timeout=timeout or self._timeout
            )
        except WireError as exc:
            raise ServerUnavailable(f"{self.url}: {exc}") from None
        return _json_object(answer.status, answer.body, self.url, path)


def _json_object(status: int, body: bytes, url: str, path: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer; the error any other answer stands for."""
    _check(status, body, url, path)
    if not body:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        raise ServerUnavailable(f"{url}{path}: the answer is not JSON") from None
    if not isinstance(data, dict):
        raise ServerUnavailable(f"{url}{path}: the answer is not a JSON object")
    return data


def _check(status: int, body: bytes, url: str, path: str) -> None:
    """Raise the error a non-2xx answer stands for."""
    if status < 300:
        return
    code, message = _error_body(body, path)
    if status == 409 and code == "lease_lost":
        raise LeaseLost(message)
    if status >= 500 or status in (408, 429):
        raise ServerUnavailable(f"{url}: {message} ({status})")
    raise Refused(status, code, message)


def _error_body(body: bytes, path: str) -> tuple[str, str]:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        code, message = data.get("code"), data.get("message")
        if isinstance(code, str):
            return code, str(message or code)
    return "http_error", f"{API}{path} failed"


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    return str(exc) or type(exc).__name__


def _job(job_id: str) -> str:
    return f"/jobs/{quote(job_id, safe='')}"


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ServerUnavailable(f"the server's answer has no {key!r}")
    return value


async def _chunks(stream: IO[bytes], size: int = 1 << 16) -> AsyncIterator[bytes]:
    while chunk := stream.read(size):
        yield chunk

"""The HTTP channel's error translation and the backoff policy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from conveyor.errors import LeaseLost
from conveyor.runner.http_channel import (
    Backoff,
    ChannelError,
    HttpChannel,
    Refused,
    ServerUnavailable,
)

T = TypeVar("T")


Seen = list[tuple[str, dict[str, str], bytes]]


def answering(
    status: int, body: object = None, *, raw: bytes | None = None, seen: Seen | None = None
) -> Callable[[Callable[[HttpChannel], Awaitable[T]]], T]:
    """Run a call against a real loopback server that gives every request this answer."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
        sent = await reader.readexactly(int(headers.get("content-length", "0")))
        if seen is not None:
            seen.append((head[0], headers, sent))
        payload = raw if raw is not None else json.dumps(body).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload
        )
        await writer.drain()
        writer.close()

    def run(call: Callable[[HttpChannel], Awaitable[T]]) -> T:
        async def main() -> T:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            channel = HttpChannel(f"http://127.0.0.1:{port}/", "tok")
            try:
                return await call(channel)
            finally:
                await channel.aclose()
                server.close()
                await server.wait_closed()

        return asyncio.run(main())

    return run


def test_requests_carry_the_token_and_the_contract_body() -> None:
    seen: Seen = []
    end = [{"type": "job_end", "conclusion": "failure"}]
    answering(200, {}, seen=seen)(lambda channel: channel.report("job/1", 7, end))
    ((request_line, headers, body),) = seen
    assert request_line == "POST /api/v1/jobs/job%2F1/report HTTP/1.1"
    assert headers["authorization"] == "Bearer tok"
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"epoch": 7, "events": end}


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (409, {"code": "lease_lost", "message": "stale"}, LeaseLost, None),
        (409, {"code": "conflict", "message": "step already finished"}, Refused, "conflict"),
        (401, {"code": "unauthorized", "message": "invalid token"}, Refused, "unauthorized"),
        (422, {"code": "invalid", "message": "epoch: missing"}, Refused, "invalid"),
        (503, {"code": "unavailable", "message": "database is locked"}, ServerUnavailable, None),
        (429, None, ServerUnavailable, None),
        (502, None, ServerUnavailable, None),
    ],
)
def test_answers_become_typed_errors(
    status: int, body: object, error: type[Exception], code: str | None
) -> None:
    with pytest.raises(error) as caught:
        answering(status, body)(lambda channel: channel.report("j", 1, [{"type": "job_start"}]))
    if code is not None:
        assert isinstance(caught.value, Refused)
        assert (caught.value.status, caught.value.code) == (status, code)


def test_an_unreachable_server_is_retryable() -> None:
    channel = HttpChannel("http://127.0.0.1:9", "tok")  # the discard port: nobody listens
    with pytest.raises(ServerUnavailable, match=r"127\.0\.0\.1:9"):
        asyncio.run(channel.poll(0.0))


def test_an_answer_that_is_not_json_is_retryable() -> None:
    with pytest.raises(ServerUnavailable, match="not JSON"):
        answering(200, raw=b"<html>proxy error</html>")(lambda channel: channel.poll(0.0))


def test_a_heartbeat_answer_without_ttl_is_not_trusted() -> None:
    with pytest.raises(ServerUnavailable, match="lease_ttl"):
        answering(200, {"cancel_requested": True})(lambda channel: channel.heartbeat("j", 1))


def test_heartbeat_reads_cancel_requested() -> None:
    answer = {"cancel_requested": True, "lease_ttl": 3}
    beat = answering(200, answer)(lambda channel: channel.heartbeat("j", 1))
    assert (beat.cancel_requested, beat.lease_ttl) == (True, 3.0)


def test_poll_returns_the_assignment_or_none() -> None:
    assert answering(200, {"job": None})(lambda channel: channel.poll(1.0)) is None
    job = answering(200, {"job": {"job_id": "j"}})(lambda channel: channel.poll(1.0))
    assert job == {"job_id": "j"}


def test_a_url_without_scheme_is_a_clear_error() -> None:
    with pytest.raises(ChannelError, match="must start with http"):
        HttpChannel("conveyor.example:8080", "tok")


def test_backoff_doubles_up_to_its_cap_with_jitter_and_resets() -> None:
    top = Backoff(0.5, 4.0, jitter=lambda: 1.0)
    assert [top.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    top.reset()
    assert top.next() == 0.5
    bottom = Backoff(0.5, 4.0, jitter=lambda: 0.0)
    assert [bottom.next() for _ in range(4)] == [0.25, 0.5, 1.0, 2.0]


def test_backoff_never_starts_above_its_cap() -> None:
    assert Backoff(1.0, 0.2, jitter=lambda: 1.0).next() == 0.2

"""The HTTP channel's error translation and the backoff policy."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from conveyor.errors import LeaseLost
from conveyor.runner.http_channel import (
    Backoff,
    ChannelError,
    HttpChannel,
    Refused,
    ServerUnavailable,
)


def answering(status: int, body: object = None, *, raw: bytes | None = None) -> HttpChannel:
    def handle(request: httpx.Request) -> httpx.Response:
        if raw is not None:
            return httpx.Response(status, content=raw)
        return httpx.Response(status, json=body)

    return HttpChannel("http://conveyor.test/", "tok", transport=httpx.MockTransport(handle))


def test_requests_carry_the_token_and_the_contract_body() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    channel = HttpChannel("http://conveyor.test", "s3cret", transport=httpx.MockTransport(handle))
    asyncio.run(channel.report("job/1", 7, [{"type": "job_end", "conclusion": "failure"}]))
    (request,) = seen
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.url.raw_path == b"/api/v1/jobs/job%2F1/report"
    assert request.read() == (b'{"epoch":7,"events":[{"type":"job_end","conclusion":"failure"}]}')


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
        asyncio.run(answering(status, body).report("j", 1, [{"type": "job_start"}]))
    if code is not None:
        assert isinstance(caught.value, Refused)
        assert (caught.value.status, caught.value.code) == (status, code)


def test_an_unreachable_server_is_retryable() -> None:
    channel = HttpChannel("http://127.0.0.1:9", "tok")  # the discard port: nobody listens
    with pytest.raises(ServerUnavailable, match=r"127\.0\.0\.1:9"):
        asyncio.run(channel.poll(0.0))


def test_an_answer_that_is_not_json_is_retryable() -> None:
    with pytest.raises(ServerUnavailable, match="not JSON"):
        asyncio.run(answering(200, raw=b"<html>proxy error</html>").poll(0.0))


def test_a_heartbeat_answer_without_ttl_is_not_trusted() -> None:
    with pytest.raises(ServerUnavailable, match="lease_ttl"):
        asyncio.run(answering(200, {"cancel_requested": True}).heartbeat("j", 1))


def test_heartbeat_reads_cancel_requested() -> None:
    beat = asyncio.run(answering(200, {"cancel_requested": True, "lease_ttl": 3}).heartbeat("j", 1))
    assert (beat.cancel_requested, beat.lease_ttl) == (True, 3.0)


def test_poll_returns_the_assignment_or_none() -> None:
    assert asyncio.run(answering(200, {"job": None}).poll(1.0)) is None
    assert asyncio.run(answering(200, {"job": {"job_id": "j"}}).poll(1.0)) == {"job_id": "j"}


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

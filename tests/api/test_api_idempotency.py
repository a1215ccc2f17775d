"""`Idempotency-Key` through the API: one request acts, concurrent ones wait, others replay."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from conveyor.api import idempotency
from conveyor.engine.states import Conclusion
from conveyor.errors import StoreError
from tests.api.conftest import BACKEND_INDEPENDENT, Live

REPOSITORIES = "/api/v1/repositories"
BODY = b'{"name": "acme/a", "url": "/x"}'
JSON = {"Content-Type": "application/json"}


def at_once(
    live: Live, key: str, count: int, send: Callable[[httpx.Client], httpx.Response]
) -> list[httpx.Response]:
    """`send` from `count` threads, each on its own connection, released together."""
    start = threading.Barrier(count)

    def one(_: int) -> httpx.Response:
        with live.client(headers={"Idempotency-Key": key}) as http:
            start.wait(timeout=10)
            return send(http)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def slowed(live: Live, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make repository registration take `seconds`, so requests overlap it."""
    create = live.store.create_repository

    async def slow(*args: Any) -> Any:
        await asyncio.sleep(seconds)
        return await create(*args)

    monkeypatch.setattr(live.store, "create_repository", slow)


def register(live: Live, key: str) -> httpx.Response:
    with live.client(headers={"Idempotency-Key": key}) as http:
        return http.post(REPOSITORIES, content=BODY, headers=JSON)


def repositories(live: Live) -> list[dict[str, Any]]:
    with live.client() as http:
        items: list[dict[str, Any]] = http.get(REPOSITORIES).json()["items"]
    return items


def replayed(answer: httpx.Response) -> bool:
    return bool(answer.headers.get("idempotent-replayed") == "true")


def assert_in_use(answer: httpx.Response) -> None:
    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "idempotency_key_in_use"
    assert "in progress" in answer.json()["message"]
    assert answer.headers["retry-after"] == "1"


def test_concurrent_reruns_with_one_key_create_one_run(live: Live) -> None:
    run_id = live.dispatch(live.register_workflow())
    with live.client() as http:
        assert http.post(f"/api/v1/runs/{run_id}/cancel").status_code == 202
    live.call(live.store.complete_run(run_id, Conclusion.CANCELLED))
    path = f"/api/v1/runs/{run_id}/rerun"

    answers = at_once(live, "rerun-once", 8, lambda http: http.post(path))
    with live.client(headers={"Idempotency-Key": "rerun-once"}) as http:
        later = http.post(path)

    acted = [a for a in answers if a.status_code == 202]
    assert len({a.json()["run_id"] for a in acted}) == 1
    assert sum("idempotent-replayed" not in a.headers for a in acted) == 1
    for answer in answers:
        if answer.status_code != 202:
            assert_in_use(answer)
    assert (later.status_code, later.json()) == (202, acted[0].json())
    assert later.headers["idempotent-replayed"] == "true"
    with live.client() as http:
        runs = http.get("/api/v1/runs").json()["items"]
    assert len(runs) == 2


def test_requests_while_the_first_is_in_flight_are_409_then_replayed(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    slowed(live, monkeypatch, 0.5)
    answers = at_once(
        live, "repo-once", 8, lambda http: http.post(REPOSITORIES, content=BODY, headers=JSON)
    )
    (created,) = [a for a in answers if a.status_code == 201 and not replayed(a)]
    late = [a for a in answers if replayed(a)]  # a thread that started after the first ended
    assert all(a.content == created.content for a in late)
    in_use = [a for a in answers if a.status_code == 409]
    assert len(in_use) >= 1 and len(in_use) + len(late) == 7
    for answer in in_use:
        assert_in_use(answer)
    again = register(live, "repo-once")
    assert (again.status_code, again.content) == (201, created.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert len(repositories(live)) == 1


def test_a_key_sent_with_another_request_is_422(live: Live) -> None:
    with live.client(headers={"Idempotency-Key": "bound"}) as http:
        first = http.post(REPOSITORIES, content=BODY, headers=JSON)
        other_body = http.post(REPOSITORIES, json={"name": "acme/b", "url": "/x"})
        other_path = http.post("/api/v1/workflows", content=BODY, headers=JSON)
        same = http.post(REPOSITORIES, content=BODY, headers=JSON)
    assert first.status_code == 201
    for answer in (other_body, other_path):
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "idempotency_key_reused"
        assert "another request" in answer.json()["message"]
    assert (same.status_code, same.content) == (201, first.content)
    assert [r["name"] for r in repositories(live)] == ["acme/a"]


def test_a_server_error_releases_the_key_for_a_retry(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    create = live.store.create_repository
    failures: list[Exception] = [RuntimeError("bug"), StoreError("database went away")]

    async def failing(*args: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return await create(*args)

    monkeypatch.setattr(live.store, "create_repository", failing)
    # One connection each: the server closes the one it answered an exception on.
    crashed, unavailable, acted, replayed = (register(live, "retried") for _ in range(4))
    assert (crashed.status_code, crashed.json()["code"]) == (500, "internal")
    assert (unavailable.status_code, unavailable.json()["code"]) == (503, "unavailable")
    assert acted.status_code == 201 and "idempotent-replayed" not in acted.headers
    assert (replayed.status_code, replayed.content) == (201, acted.content)
    assert replayed.headers["idempotent-replayed"] == "true"
    assert len(repositories(live)) == 1


def test_a_stale_reservation_is_taken_over(live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that reserved the key and died left it unanswered."""
    mine = idempotency.fingerprint("POST", REPOSITORIES, BODY)
    left = live.call(live.store.reserve_response("default", "orphan", mine, 60.0))
    assert left.reservation is not None
    fresh = register(live, "orphan")
    monkeypatch.setattr(idempotency, "STALE_AFTER", 0.05)
    time.sleep(0.1)
    taken, replayed = register(live, "orphan"), register(live, "orphan")
    assert_in_use(fresh)
    assert taken.status_code == 201 and "idempotent-replayed" not in taken.headers
    assert (replayed.status_code, replayed.content) == (201, taken.content)
    assert not live.call(live.store.keep_response("default", "orphan", left.reservation, 201, "{}"))
    assert len(repositories(live)) == 1


@BACKEND_INDEPENDENT
@pytest.mark.parametrize(
    "key", [b"x" * 256, b"", b"tab\there", b"c1\x85control", "\u202eevil".encode()]
)
def test_hostile_keys_are_refused(live: Live, key: bytes) -> None:
    with live.client() as http:
        answer = http.post(
            REPOSITORIES,
            content=BODY,
            headers={b"Content-Type": b"application/json", b"Idempotency-Key": key},
        )
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "invalid"
    assert "Idempotency-Key must be 1 to 255 printable characters" in answer.json()["message"]
    assert repositories(live) == []

"""Job logs through the API: pages by seq, the whole text, and the live SSE stream."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from tests.api.conftest import Live


def _send(live: Live, token: str, job: dict[str, Any], lines: list[list[Any]]) -> None:
    with live.client(token) as http:
        answer = http.post(
            f"/api/v1/jobs/{job['job_id']}/logs", json={"epoch": job["epoch"], "lines": lines}
        )
    assert answer.status_code == 200, answer.text


def _complete(live: Live, token: str, job: dict[str, Any]) -> None:
    with live.client(token) as http:
        answer = http.post(
            f"/api/v1/jobs/{job['job_id']}/complete",
            json={"epoch": job["epoch"], "conclusion": "success"},
        )
    assert answer.status_code == 200, answer.text


def _events(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if fields:
            events.append(fields)
    return events


def test_log_pages_follow_seq(live: Live) -> None:
    token, job = live.leased_job(start=True)
    _send(live, token, job, [[0, f"line {i}"] for i in range(1, 6)])
    base = f"/api/v1/jobs/{job['job_id']}/logs"
    with live.client() as http:
        first = http.get(base, params={"limit": 2}).json()
        second = http.get(base, params={"after": first["next"], "limit": 2}).json()
        rest = http.get(base, params={"after": second["next"], "limit": 2}).json()
        assert http.get(base, params={"after": -1}).status_code == 422
    assert first == {
        "lines": [{"seq": 1, "step": 0, "text": "line 1"}, {"seq": 2, "step": 0, "text": "line 2"}],
        "next": 2,
    }
    assert [line["seq"] for line in second["lines"]] == [3, 4]
    assert rest == {"lines": [{"seq": 5, "step": 0, "text": "line 5"}], "next": None}


def test_logs_txt_is_the_whole_text(live: Live) -> None:
    token, job = live.leased_job(start=True)
    _send(live, token, job, [[0, "first"], [None, "second ☃"], [1, ""]])
    with live.client() as http:
        answer = http.get(f"/api/v1/jobs/{job['job_id']}/logs.txt")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == "first\nsecond ☃\n\n"


def test_stream_of_a_finished_job_sends_every_line_then_ends(live: Live) -> None:
    token, job = live.leased_job(start=True)
    _send(live, token, job, [[0, "one"], [0, "two\r"], [0, "data: three"]])
    _complete(live, token, job)
    with live.client() as http:
        answer = http.get(f"/api/v1/jobs/{job['job_id']}/logs/stream")
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = _events(answer.text)
    assert [e.get("id") for e in events] == ["1", "2", "3", None]
    assert [json.loads(e["data"])["text"] for e in events[:3]] == ["one", "two\r", "data: three"]
    assert events[-1]["event"] == "end"


def test_stream_resumes_after_last_event_id(live: Live) -> None:
    token, job = live.leased_job(start=True)
    _send(live, token, job, [[0, f"l{i}"] for i in range(1, 5)])
    _complete(live, token, job)
    url = f"/api/v1/jobs/{job['job_id']}/logs/stream"
    with live.client(headers={"Last-Event-ID": "2"}) as http:
        events = _events(http.get(url).text)
    with live.client(headers={"Last-Event-ID": "two"}) as http:
        bad = http.get(url)
    assert [e.get("id") for e in events] == ["3", "4", None]
    assert bad.status_code == 422


def test_stream_follows_a_running_job_live(live: Live) -> None:
    token, job = live.leased_job(start=True)
    received: list[dict[str, str]] = []

    def follow() -> None:
        with (
            live.client() as http,
            http.stream("GET", f"/api/v1/jobs/{job['job_id']}/logs/stream") as answer,
        ):
            received.extend(_events(answer.read().decode()))

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(0.2)
    _send(live, token, job, [[0, "early"]])
    time.sleep(0.2)
    _send(live, token, job, [[0, "late"]])
    _complete(live, token, job)
    follower.join(timeout=15)
    assert not follower.is_alive()
    texts = [json.loads(e["data"])["text"] for e in received if e.get("event") == "log"]
    assert texts == ["early", "late"]
    assert received[-1]["event"] == "end"

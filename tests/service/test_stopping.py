"""A stopping server: runners' long polls answer at once instead of holding the stop."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.service.cluster import Server


def test_a_stopping_server_answers_its_long_polls_and_stops_at_once(
    tmp_path: Path, database_url: str | None
) -> None:
    server = Server(tmp_path / "data", database_url).start()
    try:
        registered = httpx.post(
            f"{server.url}/api/v1/runners/register",
            json={"name": "r", "labels": ["linux"]},
            headers={"Authorization": f"Bearer {server.runner_token}"},
        ).json()
        answers: list[Any] = []

        def poll() -> None:
            answer = httpx.post(
                f"{server.url}/api/v1/runners/poll",
                json={"wait": 30},
                headers={"Authorization": f"Bearer {registered['token']}"},
                timeout=60,
            )
            answers.append((answer.status_code, answer.json()))

        polls = [threading.Thread(target=poll) for _ in range(3)]
        for thread in polls:
            thread.start()
        time.sleep(0.5)  # all three wait
        assert server.proc is not None
        stopped_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=20)
        took = time.monotonic() - stopped_at
        for thread in polls:
            thread.join(timeout=10)
    finally:
        server.kill()
    assert answers == [(200, {"job": None})] * 3
    assert took < 2.0, took  # not uvicorn's 3 s of grace, then a cancel
    assert "ERROR" not in server.log(), server.log()

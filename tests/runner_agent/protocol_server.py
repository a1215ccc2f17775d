"""An in-memory runner-protocol server behind `httpx.MockTransport`, for the client pieces.

It records every call with the time it arrived and answers as the contract
says; tests make it unreachable (connection refused), slow, or refuse a
stale epoch. The agent's end-to-end tests use the real server instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from conveyor.runner.http_channel import HttpChannel


@dataclass
class Call:
    at: float
    method: str
    path: str
    body: Any


@dataclass
class ProtocolServer:
    epoch: int = 1
    reachable: bool = True
    calls: list[Call] = field(default_factory=list)
    refused: int = 0
    """How many calls met a closed door."""
    cancel_requested: bool = False
    lease_ttl: float = 10.0

    def channel(self) -> HttpChannel:
        return HttpChannel(
            "http://conveyor.test", "token", transport=httpx.MockTransport(self.handle)
        )

    async def handle(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        if not self.reachable:
            self.refused += 1
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path.removeprefix("/api/v1")
        body: Any = None
        if request.headers.get("content-type") == "application/json":
            body = json.loads(request.content)
        self.calls.append(Call(time.monotonic(), request.method, path, body))
        if isinstance(body, dict) and "epoch" in body and body["epoch"] != self.epoch:
            return httpx.Response(409, json={"code": "lease_lost", "message": "stale epoch"})
        if path.endswith("/heartbeat"):
            answer = {"cancel_requested": self.cancel_requested, "lease_ttl": self.lease_ttl}
            return httpx.Response(200, json=answer)
        if path.endswith("/logs"):
            return httpx.Response(200, json={"last_seq": len(self.lines())})
        return httpx.Response(200, json={})

    def writes(self) -> list[str]:
        """What reached the server, in order: `logs`, `steps/0/start`, `complete`, ..."""
        return [c.path.split("/", 3)[3] for c in self.calls if c.path.startswith("/jobs/")]

    def lines(self) -> list[str]:
        return [text for c in self.calls if c.path.endswith("/logs") for _, text in c.body["lines"]]

    def batches(self) -> list[Call]:
        return [c for c in self.calls if c.path.endswith("/logs")]

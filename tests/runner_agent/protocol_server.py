"""A recording runner-protocol peer on a real loopback socket, for the client pieces.

The reporter's and lease's tests need to see *when* each call arrived and to
make the server unreachable on demand, which the real `conveyor serve` cannot
show; the agent's end-to-end tests use the real server. This peer speaks
HTTP/1.1 over a real TCP socket (keep-alive included): while `reachable` is
false it accepts each connection and drops it unanswered, so the client sees
a genuine transport error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

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
    """How many connections met a closed door."""
    unanswered: int = 0
    """How many of the next requests are received (and recorded) but never answered."""
    dropped: int = 0
    """How many of the next requests are received (and recorded), then their connection
    closes unanswered: an answer lost on the way, seen at once."""
    cancel_requested: bool = False
    lease_ttl: float = 10.0
    _server: asyncio.AbstractServer | None = None
    _port: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _channels: list[HttpChannel] = field(default_factory=list)

    def channel(self) -> HttpChannel:
        """A client for this server; starts listening on the running event loop."""
        if self._server is None or self._server.get_loop() is not asyncio.get_running_loop():
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            self._port = sock.getsockname()[1]
            self._server = None
            task = asyncio.ensure_future(self._serve(sock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        channel = HttpChannel(f"http://127.0.0.1:{self._port}", "token")
        self._channels.append(channel)
        return channel

    async def _serve(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._connection, sock=sock)

    async def close(self) -> None:
        """Stop listening and drop every connection (call before the event loop ends)."""
        for channel in self._channels:
            await channel.aclose()
        self._channels.clear()
        for task in list(self._tasks):
            await task
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.sleep(0)
        if self._server is not None:
            await self._server.wait_closed()
        self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                if not self.reachable:
                    self.refused += 1
                    return  # drop the connection unanswered
                method, path, body = request
                status, answer = self._answer(method, path, body)
                if self.dropped > 0:
                    self.dropped -= 1
                    return
                if self.unanswered > 0:
                    self.unanswered -= 1
                    return  # the answer is lost on the way
                payload = json.dumps(answer).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        path = path.removeprefix("/api/v1")
        self.calls.append(Call(time.monotonic(), method, path, body))
        if isinstance(body, dict) and "epoch" in body and body["epoch"] != self.epoch:
            return 409, {"code": "lease_lost", "message": "stale epoch"}
        if path.endswith("/heartbeat"):
            return 200, {"cancel_requested": self.cancel_requested, "lease_ttl": self.lease_ttl}
        if path.endswith("/report"):
            return 200, {"last_seq": len(self.lines())}
        return 200, {}

    def writes(self) -> list[str]:
        """The calls about jobs that reached the server, in order: `report`, `heartbeat`, ..."""
        return [c.path.split("/", 3)[3] for c in self.calls if c.path.startswith("/jobs/")]

    def reports(self) -> list[Call]:
        return [c for c in self.calls if c.path.endswith("/report")]

    def events(self) -> list[str]:
        """Every reported event, in order: `job_start`, `step_start 0`, `logs`, `job_end`, ..."""
        return [
            event["type"] + (f" {event['index']}" if "index" in event else "")
            for c in self.reports()
            for event in c.body["events"]
        ]

    def lines(self) -> list[str]:
        """Every log line that arrived."""
        return [
            text
            for c in self.reports()
            for event in c.body["events"]
            if event["type"] == "logs"
            for _, text in event["lines"]
        ]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, Any] | None:
    """One HTTP/1.1 request (method, path, JSON body or None); None at end of stream."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {
        k.strip().lower(): v.strip()
        for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    raw = await reader.readexactly(int(headers.get("content-length", "0")))
    body = json.loads(raw) if raw and "json" in headers.get("content-type", "") else None
    return method, path, body

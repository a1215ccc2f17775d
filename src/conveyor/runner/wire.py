"""A small HTTP/1.1 client for the runner protocol's JSON calls, on asyncio streams.

httpx spent about 1 ms of CPU per call in its layers (URL and cookie models,
auth and redirect hooks, anyio) — half of what a runner spends on a short
job, which makes two calls. This client does only what those calls need: one
request at a time per connection, JSON bodies with a Content-Length, answers
framed by Content-Length, chunks or the end of the connection, and
connections kept open for the next call. A connection idle for longer than
servers usually keep one (uvicorn: 5 s) is not reused, so a call never
meets a connection the server is closing. Artifacts, which stream, go through
httpx (see `HttpChannel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024
MAX_BODY = 256 * 1024 * 1024
IDLE_REUSE = 4.0
"""Seconds a kept connection may idle and still be reused."""
MAX_IDLE = 8


class WireError(Exception):
    """No answer: no connection, a broken or malformed answer, or none in time."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self, now: float) -> bool:
        return (
            now - self.idle_since < IDLE_REUSE
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()


class JsonClient:
    """Calls on one server (`base_url`, http or https), each with the same `headers`."""

    def __init__(self, base_url: str, headers: Mapping[str, str]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = parts.scheme == "https"
        self._prefix = parts.path.rstrip("/")
        host = f"[{self._host}]" if ":" in self._host else self._host
        if parts.port is not None:
            host += f":{parts.port}"
        fixed = {"Host": host, "Accept": "application/json", **headers}
        if any(c in "\r\n" for item in fixed.items() for text in item for c in text):
            raise ValueError("a header name or value holds a line break")
        self._head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._idle: list[_Connection] = []
        self._ssl: ssl.SSLContext | None = None

    async def request(
        self, method: str, path: str, body: bytes | None, *, timeout: float
    ) -> Answer:
        """Send one request and read its answer; WireError when there is none."""
        try:
            async with asyncio.timeout(timeout):
                conn = await self._connection()
                try:
                    answer, keep = await self._exchange(conn, method, path, body)
                except BaseException:
                    conn.close()
                    raise
        except TimeoutError:
            raise WireError("no answer in time") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise WireError(_describe(exc)) from None
        if keep and len(self._idle) < MAX_IDLE:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(OSError):
                await conn.writer.wait_closed()

    async def _connection(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable(now):
                return conn
            conn.close()
        if self._tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        reader, writer = await asyncio.open_connection(
            self._host, self._port, ssl=self._ssl if self._tls else None, limit=MAX_HEAD
        )
        return _Connection(reader, writer)

    async def _exchange(
        self, conn: _Connection, method: str, path: str, body: bytes | None
    ) -> tuple[Answer, bool]:
        """-> the answer, and whether the connection may carry another request."""
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\n{self._head}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        conn.writer.write(head.encode("latin-1") + b"\r\n" + (body or b""))
        await conn.writer.drain()
        status, headers = _parse_head(await conn.reader.readuntil(b"\r\n\r\n"))
        while 100 <= status < 200:  # interim answers (100 Continue, 103 Early Hints)
            if status == 101:
                raise WireError("the server switched protocols")
            status, headers = _parse_head(await conn.reader.readuntil(b"\r\n\r\n"))
        keep = headers.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304):
            return Answer(status, b""), keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return Answer(status, await _chunked(conn.reader)), keep
        length = headers.get("content-length")
        if length is None:  # the body runs to the end of the connection
            return Answer(status, await _to_end(conn.reader)), False
        if not length.isdigit() or int(length) > MAX_BODY:
            raise WireError(f"the answer's Content-Length {length[:20]!r} is not usable")
        return Answer(status, await conn.reader.readexactly(int(length))), keep


def _parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise WireError(f"not an HTTP/1.x answer: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise WireError(f"a malformed header line: {line[:60]!r}")
            headers[name.strip().lower()] = value.strip()
    return int(code), headers


async def _to_end(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while chunk := await reader.read(65536):
        total += len(chunk)
        if total > MAX_BODY:
            raise WireError("the answer is too large")
        parts.append(chunk)
    return b"".join(parts)


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = (await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise WireError(f"a malformed chunk size: {size_line[:20]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY:
            raise WireError("the answer is too large")
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise WireError("a chunk does not end where its size says")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the server closed the connection before answering"
    if isinstance(exc, asyncio.LimitOverrunError):
        return "the answer's head is too large"
    return str(exc) or type(exc).__name__

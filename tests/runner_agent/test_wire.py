"""The runner's small HTTP client against real loopback servers, well-behaved and not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from conveyor.runner import wire
from conveyor.runner.wire import JsonClient, WireError

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def against(handler: Handler, call: Callable[[JsonClient], Awaitable[T]]) -> tuple[T, int]:
    """`call` with a client of a server run by `handler`; -> its result, connections made."""
    connections = 0

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def main() -> T:
        server = await asyncio.start_server(counted, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = JsonClient(f"http://127.0.0.1:{port}/api", {"Authorization": "Bearer t"})
        try:
            return await call(client)
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    result = asyncio.run(main())
    return result, connections


async def read_request(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return head.split("\r\n")[0], await reader.readexactly(length)


def answering(*answers: bytes, then_close: bool = False) -> Handler:
    """Answer successive requests on a connection with `answers`, in order."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await read_request(reader)
            writer.write(answer)
            await writer.drain()
        if not then_close:
            await reader.read()  # keep the connection until the client is done

    return handle


def ok(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


async def two_calls(client: JsonClient) -> list[wire.Answer]:
    return [await client.request("POST", "/x", b"{}", timeout=5) for _ in range(2)]


def test_calls_reuse_one_kept_connection() -> None:
    answers, connections = against(answering(ok(b'{"a":1}'), ok(b"{}")), two_calls)
    assert [(a.status, a.body) for a in answers] == [(200, b'{"a":1}'), (200, b"{}")]
    assert connections == 1


def test_the_request_names_its_path_body_and_headers() -> None:
    seen: list[tuple[str, bytes]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(ok(b"{}"))
        await writer.drain()

    against(handle, lambda c: c.request("POST", "/jobs/j%2F1/report", b'{"n":1}', timeout=5))
    assert seen == [("POST /api/jobs/j%2F1/report HTTP/1.1", b'{"n":1}')]


def test_connection_close_means_a_new_connection_for_the_next_call() -> None:
    closing = ok(b"{}", "Connection: close")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answering(closing, then_close=True)(reader, writer)

    answers, connections = against(handle, two_calls)
    assert [a.status for a in answers] == [200, 200] and connections == 2


def test_a_chunked_answer_is_joined() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;ext=1\r\n{"a"\r\n3\r\n:1}\r\n0\r\nX-Trailer: y\r\n\r\n'
    )
    answers, connections = against(answering(chunked, ok(b"{}")), two_calls)
    assert answers[0].body == b'{"a":1}' and connections == 1


def test_an_answer_without_length_runs_to_the_end_of_the_connection() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 500 Oops\r\n\r\nsomething broke")
        await writer.drain()

    answer, _ = against(handle, lambda c: c.request("GET", "/x", None, timeout=5))
    assert (answer.status, answer.body) == (500, b"something broke")


def test_an_idle_connection_is_not_reused_past_the_servers_patience(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wire, "IDLE_REUSE", 0.0)
    _, connections = against(answering(ok(b"{}"), ok(b"{}")), two_calls)
    assert connections == 2


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"", "closed the connection before answering"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x answer"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed the connection"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n",
            "does not end where its size says",
        ),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (wire.MAX_HEAD + 10) + b"\r\n\r\n", "too large"),
    ],
)
def test_a_broken_answer_is_a_wire_error(answer: bytes, message: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    with pytest.raises(WireError, match=message):
        against(handle, lambda c: c.request("GET", "/x", None, timeout=5))


def test_a_silent_server_is_a_timeout() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    with pytest.raises(WireError, match="no answer in time"):
        against(handle, lambda c: c.request("GET", "/x", None, timeout=0.2))


def test_nobody_listening_is_a_wire_error() -> None:
    async def call() -> wire.Answer:
        client = JsonClient("http://127.0.0.1:9", {})  # the discard port: nobody listens
        try:
            return await client.request("GET", "/x", None, timeout=5)
        finally:
            await client.aclose()

    with pytest.raises(WireError):
        asyncio.run(call())


def test_only_http_urls_are_taken() -> None:
    with pytest.raises(ValueError, match="not an http"):
        JsonClient("ftp://example.com", {})


def test_interim_answers_are_skipped() -> None:
    early = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
    answers, connections = against(answering(early + ok(b'{"a":1}'), ok(b"{}")), two_calls)
    assert [(a.status, a.body) for a in answers] == [(200, b'{"a":1}'), (200, b"{}")]
    assert connections == 1


def test_a_switch_of_protocols_is_a_wire_error() -> None:
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    with pytest.raises(WireError, match="switched protocols"):
        against(answering(switch), lambda c: c.request("GET", "/x", None, timeout=5))


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        JsonClient("http://127.0.0.1:1", {"Authorization": "Bearer t\r\nX-Evil: 1"})

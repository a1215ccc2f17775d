"""The server's HTTP protocol: an answer's writes of one loop turn leave in one send."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from conveyor.service.http_protocol import CoalescingHttpProtocol

Scope = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    """/whole answers in one body; /parts in three, with loop turns between them."""
    assert scope["type"] == "http"
    await receive()
    if scope["path"] == "/parts":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    body = b'{"path": "' + scope["path"].encode() + b'"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=CoalescingHttpProtocol,
        log_level="critical",
        lifespan="off",
        access_log=False,
    )
    http = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(http.serve(),), daemon=True)
    thread.start()
    while not http.started:
        threading.Event().wait(0.01)
    host, port = http.servers[0].sockets[0].getsockname()[:2]
    try:
        yield host, port
    finally:
        http.should_exit = True
        thread.join(timeout=10)
        loop.close()


def request(path: str, *, close: bool = False) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: test\r\n" + connection + b"\r\n"


def read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_an_answers_head_and_body_arrive_together(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=5) as sock:
        for path in ("/first", "/second"):  # the second on the kept connection
            sock.sendall(request(path))
            first_read = sock.recv(65536)
            head, _, body = first_read.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert body == b'{"path": "' + path.encode() + b'"}'


def test_an_answer_written_over_several_turns_arrives_whole_and_in_order(
    server: tuple[str, int],
) -> None:
    with socket.create_connection(server, timeout=5) as sock:
        sock.sendall(request("/parts", close=True))
        answer = read_to_end(sock)
    head, _, chunked = answer.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert chunked == b"4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n"


def test_closing_after_an_answer_sends_the_answer_first(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=5) as sock:
        sock.sendall(request("/last", close=True))
        answer = read_to_end(sock)  # ends only when the server closed the connection
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"path": "/last"}')

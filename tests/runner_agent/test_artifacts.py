"""Artifact tar streams: what `pack` writes and what `unpack` refuses to do."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from conveyor.errors import ExecutionError
from conveyor.runner.http_artifacts import HttpArtifactStore, pack, unpack
from conveyor.runner.http_channel import Backoff, HttpChannel

T = TypeVar("T")

ODD_NAMES = ["plain.txt", "dir with space/ü-ñ.txt", "deep/er/still/x.bin", "-leading-dash", "a\nb"]


def make_files(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode() * 3)


def hostile_tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def test_files_round_trip_with_odd_names_and_modes(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_files(src, ODD_NAMES)
    (src / "deep/er/still/x.bin").chmod(0o755)
    stream = io.BytesIO()
    total = pack(str(src), ODD_NAMES, stream)
    assert total == sum(len(n.encode()) * 3 for n in ODD_NAMES)
    stream.seek(0)
    assert unpack(stream, str(dest)) == len(ODD_NAMES)
    for name in ODD_NAMES:
        assert (dest / name).read_bytes() == name.encode() * 3
    assert os.access(dest / "deep/er/still/x.bin", os.X_OK)
    assert not os.access(dest / "plain.txt", os.X_OK)


@pytest.mark.parametrize("name", ["../outside", "/etc/passwd", "a/../../b", "a//b", "./a", ""])
def test_pack_refuses_names_that_are_not_plain_relative_paths(tmp_path: Path, name: str) -> None:
    with pytest.raises(ExecutionError, match="not a plain relative path"):
        pack(str(tmp_path), [name], io.BytesIO())


def test_pack_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ExecutionError, match="not a regular file"):
        pack(str(tmp_path), ["fifo"], io.BytesIO())


def test_pack_follows_a_symlink_to_its_content(tmp_path: Path) -> None:
    (tmp_path / "real").write_text("content")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    stream = io.BytesIO()
    pack(str(tmp_path), ["link"], stream)
    stream.seek(0)
    with tarfile.open(fileobj=stream) as tar:
        (member,) = tar.getmembers()
        assert member.isfile() and member.name == "link"


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (entry("../escape"), "not a plain relative path"),
        (entry("/abs/path"), "not a plain relative path"),
        (entry("ok/../../escape"), "not a plain relative path"),
        (entry("link", tarfile.SYMTYPE, "/etc/passwd"), "link or a device"),
        (entry("hard", tarfile.LNKTYPE, "../x"), "link or a device"),
        (entry("dev", tarfile.CHRTYPE), "link or a device"),
    ],
)
def test_unpack_refuses_hostile_members(
    tmp_path: Path, member: tarfile.TarInfo, message: str
) -> None:
    data = b"evil" if member.isfile() else None
    dest = tmp_path / "in" / "dest"
    with pytest.raises(ExecutionError, match=message):
        unpack(hostile_tar((member, data)), str(dest))
    assert not (tmp_path / "in" / "escape").exists()
    assert not (tmp_path / "escape").exists()


def test_unpack_never_writes_through_a_symlink_in_dest(tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "victim").symlink_to(outside / "file")
    (dest / "dirlink").symlink_to(outside)
    with pytest.raises(ExecutionError):
        unpack(hostile_tar((entry("victim"), b"evil")), str(dest))
    with pytest.raises(ExecutionError, match="outside"):
        unpack(hostile_tar((entry("dirlink/new/file"), b"evil")), str(dest))
    assert list(outside.iterdir()) == []


def test_unpack_refuses_garbage(tmp_path: Path) -> None:
    with pytest.raises(ExecutionError, match="not a valid tar"):
        unpack(io.BytesIO(b"this is not a tar stream at all" * 40), str(tmp_path))


Answer = tuple[int, dict[str, object]] | None


def against(
    answers: list[Answer], lost: list[str], call: Callable[[HttpArtifactStore], Awaitable[T]]
) -> T:
    """`call` with a store whose loopback server gives `answers` in turn.

    None drops the connection unanswered, as a server that went away does.
    """
    queue = list(answers)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = next(
                    (
                        int(h.split(":")[1])
                        for h in head.split("\r\n")
                        if h.lower().startswith("content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                answer = queue.pop(0)
                if answer is None:
                    return
                payload = json.dumps(answer[1]).encode()
                writer.write(
                    f"HTTP/1.1 {answer[0]} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> T:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        channel = HttpChannel(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", "t")
        store = HttpArtifactStore(
            channel, "j", 1, on_lost=lost.append, backoff=lambda: Backoff(0.01, 0.02)
        )
        try:
            return await call(store)
        finally:
            await channel.aclose()
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ((409, {"code": "conflict", "message": "taken"}), "already exists"),
        ((413, {"code": "too_large", "message": "big"}), "larger than"),
        ((409, {"code": "lease_lost", "message": "stale"}), "lease is lost"),
    ],
)
def test_an_upload_the_server_refuses_fails_clearly(
    tmp_path: Path, answer: Answer, message: str
) -> None:
    make_files(tmp_path, ["a.txt"])
    lost: list[str] = []
    with pytest.raises(ExecutionError, match=message):
        against([answer], lost, lambda store: store.upload("bundle", str(tmp_path), ["a.txt"]))
    assert bool(lost) == ("lease" in message)


def test_an_upload_waits_for_an_unreachable_server(tmp_path: Path) -> None:
    make_files(tmp_path, ["a.txt"])
    ok: Answer = (201, {"name": "bundle", "size": 10240})
    size = against(
        [None, None, ok], [], lambda store: store.upload("bundle", str(tmp_path), ["a.txt"])
    )
    assert size == len(b"a.txt" * 3)


def test_a_bad_artifact_name_fails_before_anything_is_sent(tmp_path: Path) -> None:
    with pytest.raises(ExecutionError, match="invalid"):  # any request would find no answer
        against([], [], lambda store: store.upload("../etc", str(tmp_path), []))

"""Run one step's process: its output line by line, its timeout, its cancellation.

The process leads its own process group (a new session), reads /dev/null as
input, and writes stdout and stderr into one pipe, so lines keep the order in
which the process wrote them. Lines are decoded as UTF-8 (invalid bytes
become U+FFFD, as do NUL characters, which no log store keeps), lose their
line break (LF or CRLF), and lines longer than `max_line_bytes` are cut into
pieces rather than buffered without end.

On timeout or cancellation the group gets GitHub's sequence: SIGINT, then
SIGTERM after `interrupt_grace` seconds, then SIGKILL after `terminate_grace`;
the SIGKILL goes to the whole group in any case, so children and
grandchildren go too. When the process ends by itself its background
children are left running (a step may start a service for later steps) and
output is read until the pipe closes or, if they hold it open, for
`linger` seconds more; `kill_process_group` ends them at the end of the job.
Until then the group is live (`kill_live_groups` ends all of them: a forced
stop of the whole program).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ExecutionError

MAX_LINE_BYTES = 1024 * 1024

_live_groups: set[int] = set()
"""The process groups of the steps started and not yet killed with SIGKILL."""


@dataclass(frozen=True)
class ProcessResult:
    """How a step's process ended.

    `exit_code` is 128 + N when signal N ended the process, as shells report
    it, and -1 in the rare case that even SIGKILL did not end it in time.
    `pid` is also the id of its process group.
    """

    exit_code: int
    timed_out: bool = False
    cancelled: bool = False
    pid: int = 0


async def run_process(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str] | None,
    on_line: Callable[[str], None],
    timeout: float | None = None,
    cancel: asyncio.Event | None = None,
    interrupt_grace: float = 7.5,
    terminate_grace: float = 2.5,
    linger: float = 0.2,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ProcessResult:
    """Run `argv` to its end, calling `on_line` for every line it prints.

    Raises ExecutionError when the process cannot be started. An exception
    from `on_line` kills the process group and propagates, as does the
    cancellation of the calling task.
    """
    if not argv:
        raise ExecutionError("no command to run")
    if not os.path.isdir(cwd):
        raise ExecutionError(f"working directory {cwd!r} does not exist")
    loop = asyncio.get_running_loop()
    protocol = _OutputProtocol(loop, on_line, max_line_bytes)
    try:
        transport, _ = await loop.subprocess_exec(
            lambda: protocol,
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        raise ExecutionError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
    pid = transport.get_pid()
    _live_groups.add(pid)
    cancel_wait = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
    timed_out = cancelled = False
    try:
        waiters: set[asyncio.Future[Any]] = {protocol.exited, protocol.failed}
        if cancel_wait is not None:
            waiters.add(cancel_wait)
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not protocol.exited.done() and not protocol.failed.done():
            cancelled = cancel is not None and cancel.is_set()
            timed_out = not cancelled
            await _stop_group(pid, protocol.exited, interrupt_grace, terminate_grace)
        if not protocol.failed.done():
            await _wait(protocol.closed, linger)
            protocol.finish()
        if protocol.failed.done():
            raise protocol.failed.result()
    except BaseException:
        kill_process_group(pid)
        await _wait(protocol.exited, 5.0)  # reap it before its transport goes
        raise
    finally:
        if cancel_wait is not None:
            cancel_wait.cancel()
        transport.close()
    code = transport.get_returncode()
    exit_code = -1 if code is None else (128 - code if code < 0 else code)
    return ProcessResult(exit_code, timed_out=timed_out, cancelled=cancelled, pid=pid)


def kill_process_group(pgid: int, sig: signal.Signals = signal.SIGKILL) -> bool:
    """Send `sig` to every process in group `pgid`; False when there was none."""
    if sig == signal.SIGKILL:
        _live_groups.discard(pgid)
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_live_groups() -> None:
    """SIGKILL the process group of every step not yet ended so (a forced stop: even
    processes that ignore SIGINT and SIGTERM go)."""
    for pgid in list(_live_groups):
        kill_process_group(pgid)


async def _stop_group(
    pgid: int, exited: asyncio.Future[None], interrupt_grace: float, terminate_grace: float
) -> None:
    for sig, grace in ((signal.SIGINT, interrupt_grace), (signal.SIGTERM, terminate_grace)):
        kill_process_group(pgid, sig)
        if await _wait(exited, grace):
            break
    kill_process_group(pgid)
    await _wait(exited, 5.0)  # SIGKILL cannot be caught; only a stuck kernel call delays it


async def _wait(future: asyncio.Future[None], seconds: float) -> bool:
    """Whether `future` completes within `seconds` (it is not cancelled either way)."""
    if not future.done():
        await asyncio.wait({future}, timeout=seconds)
    return future.done()


class _OutputProtocol(asyncio.SubprocessProtocol):
    """Splits the merged output pipe into lines and tracks the process's end."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_line: Callable[[str], None], max_line: int
    ) -> None:
        self._on_line = on_line
        self._lines = _LineSplitter(max_line)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.failed: asyncio.Future[BaseException] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        assert isinstance(data, bytes)
        self._deliver(self._lines.feed(data))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.finish()
        if not self.closed.done():
            self.closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def finish(self) -> None:
        """Deliver a last line that had no line break (once)."""
        self._deliver(self._lines.flush())

    def _deliver(self, lines: list[str]) -> None:
        if self.failed.done():
            return
        for line in lines:
            try:
                self._on_line(line)
            except Exception as exc:
                self.failed.set_result(exc)
                return


class _LineSplitter:
    """Bytes in, decoded lines out; a line over `max_bytes` comes out in pieces."""

    def __init__(self, max_bytes: int) -> None:
        self._buffer = bytearray()
        self._max = max_bytes

    def feed(self, data: bytes) -> list[str]:
        buffer = self._buffer
        buffer += data
        lines = []
        start = 0
        while True:
            newline = buffer.find(b"\n", start, start + self._max + 1)
            if newline >= 0:
                lines.append(_decode(buffer[start:newline]))
                start = newline + 1
            elif len(buffer) - start > self._max:
                cut = _char_boundary(buffer, start, start + self._max)
                lines.append(_decode(buffer[start:cut], strip_cr=False))
                start = cut
            else:
                break
        del buffer[:start]
        return lines

    def flush(self) -> list[str]:
        if not self._buffer:
            return []
        line = _decode(self._buffer)
        self._buffer.clear()
        return [line]


def _decode(raw: bytes | bytearray, *, strip_cr: bool = True) -> str:
    if strip_cr and raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


def _char_boundary(buffer: bytearray, start: int, cut: int) -> int:
    """`cut`, moved back so that it does not split a UTF-8 sequence."""
    for candidate in range(cut, max(start, cut - 3), -1):
        if buffer[candidate] & 0xC0 != 0x80:  # not a continuation byte
            return candidate
    return cut

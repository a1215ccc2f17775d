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
import threading
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
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=write_end,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    except BaseException as exc:
        os.close(read_end)
        if isinstance(exc, OSError):
            raise ExecutionError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
        raise
    finally:
        os.close(write_end)
    pid = process.pid
    _live_groups.add(pid)
    output = _Output(loop, read_end, on_line, max_line_bytes)
    exited = _exit_of(loop, process)
    cancel_wait = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
    timed_out = cancelled = False
    try:
        waiters: set[asyncio.Future[Any]] = {exited, output.failed}
        if cancel_wait is not None:
            waiters.add(cancel_wait)
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done() and not output.failed.done():
            cancelled = cancel is not None and cancel.is_set()
            timed_out = not cancelled
            await _stop_group(pid, exited, interrupt_grace, terminate_grace)
        if not output.failed.done():
            await _wait(output.closed, linger)
            output.finish()
        if output.failed.done():
            raise output.failed.result()
    except BaseException:
        kill_process_group(pid)
        await _wait(exited, 5.0)  # reap it
        raise
    finally:
        if cancel_wait is not None:
            cancel_wait.cancel()
        output.close()
    code = process.returncode
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


class _Output:
    """The merged output pipe, read as the loop finds it readable: its lines go to
    `on_line`, its end completes `closed`, an exception of `on_line` completes `failed`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        on_line: Callable[[str], None],
        max_line: int,
    ) -> None:
        self._loop = loop
        self._fd: int | None = fd
        self._on_line = on_line
        self._lines = _LineSplitter(max_line)
        self.closed: asyncio.Future[None] = loop.create_future()
        self.failed: asyncio.Future[BaseException] = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, _READ)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._deliver(self._lines.feed(data))
            return
        self.finish()
        self.close()

    def finish(self) -> None:
        """Deliver a last line that had no line break (once)."""
        self._deliver(self._lines.flush())

    def close(self) -> None:
        """Stop reading (the rest of the output, if any, is not read)."""
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        if not self.closed.done():
            self.closed.set_result(None)

    def _deliver(self, lines: list[str]) -> None:
        if self.failed.done():
            return
        for line in lines:
            try:
                self._on_line(line)
            except Exception as exc:
                self.failed.set_result(exc)
                return


_READ = 65536


def _exit_of(
    loop: asyncio.AbstractEventLoop, process: subprocess.Popen[bytes]
) -> asyncio.Future[None]:
    """A future done once `process` has exited and been reaped (its `returncode` set).

    The loop watches the process's pidfd where the kernel gives one out;
    elsewhere a thread waits for it, as Python 3.11's default child watcher
    does. Either is cheaper than asyncio's subprocess transport, whose pipe
    protocols and tasks cost a short step 0.11 ms more of the runner's CPU.
    """
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # no pidfds here (old kernel, seccomp policy)
        return _exit_by_thread(loop, process)
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if process.poll() is None:
            return  # not yet (a pidfd turns readable only once its process has ended)
        loop.remove_reader(pidfd)
        os.close(pidfd)
        _done(exited)

    loop.add_reader(pidfd, readable)
    return exited


def _exit_by_thread(
    loop: asyncio.AbstractEventLoop, process: subprocess.Popen[bytes]
) -> asyncio.Future[None]:
    exited: asyncio.Future[None] = loop.create_future()

    def wait() -> None:
        process.wait()
        loop.call_soon_threadsafe(_done, exited)

    threading.Thread(target=wait, name=f"wait-{process.pid}", daemon=True).start()
    return exited


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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

"""The lease guard: a process beside the agent that kills a job's processes when the agent cannot.

A step's processes run in sessions of their own, so they outlive an agent
that is killed with SIGKILL, and keep running while it is stopped with
SIGSTOP; meanwhile the server hands the job to another runner. The agent
therefore marks every process of a job with `CONVEYOR_JOB_MARKER=<marker>`
in its environment and tells the guard each lease deadline (on the shared
monotonic clock). The guard kills the marked processes when a deadline
passes without renewal, and all of them when its input closes, which
happens however the agent ends. A process that clears its environment
escapes it (the agent's own kill of the process group still applies).

Commands on stdin, one a line:
    watch <marker> <deadline>   kill at time.monotonic() == deadline unless renewed
    kill <marker>               kill its processes (the job ended or was abandoned),
                                within KILL_DELAY seconds (the agent holds a kill
                                for up to KILL_GATHER seconds before it sends it)

Once no process of the jobs it was told to kill is left, the guard says so on
stdout (`gone <marker>...`): the agent then hands their directory trees to the
next jobs at once instead of after a wait (see workspace.Slots).

`Guard` is the agent's end of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

MARKER_ENV = "CONVEYOR_JOB_MARKER"
ROUNDS = 20
"""Scans per kill: a process forked between a scan and its kill is found by the next one."""
PAUSE = 0.01
"""Seconds between a kill's rounds."""
KILL_DELAY = 0.2
"""How long the kills of ended jobs are gathered before one scan does them all: a
runner ending 30 jobs a second scans five times a second (0.7 ms a scan of 80
processes here). The job's directory tree serves again once the guard says its
processes are gone, or at the latest after agent.REUSE_AFTER."""
SCAN_SHARE = 40
"""On a machine with many processes, where a scan takes long, kills are gathered for
at least this many times the last scan's time (up to MAX_KILL_DELAY): scanning then
takes at most a 40th of a core."""
MAX_KILL_DELAY = 0.5

logger = logging.getLogger("conveyor.runner")


def marked(*markers: str, proc: str = "/proc") -> list[int]:
    """The ids of the processes whose environment holds `CONVEYOR_JOB_MARKER=<m>`
    for one of `markers`."""
    wanted = {marker.encode() for marker in markers}
    if not wanted:
        return []
    return [
        int(entry)
        for entry in os.listdir(proc)
        if entry.isdigit() and _has_marker(_environ(f"{proc}/{entry}/environ"), wanted)
    ]


_VARIABLE = f"\0{MARKER_ENV}=".encode()
_READ = 1 << 16


def _has_marker(environ: bytes, wanted: set[bytes]) -> bool:
    """Whether `environ` sets MARKER_ENV to one of `wanted`: one search through it
    however many jobs a scan is for."""
    start = environ.find(_VARIABLE)
    while start >= 0:
        start += len(_VARIABLE)
        end = environ.index(b"\0", start)
        if environ[start:end] in wanted:
            return True
        start = environ.find(_VARIABLE, end)
    return False


def _environ(path: str) -> bytes:
    """A process's environment with a NUL before and after each variable; empty when
    it is gone or not ours."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        chunks = []
        while chunk := os.read(fd, _READ):
            chunks.append(chunk)
    except OSError:
        return b""
    finally:
        os.close(fd)
    return b"".join([b"\0", *chunks, b"\0"]) if chunks else b""


def gathering(scan_seconds: float) -> float:
    """How long to gather kills when the last scan took `scan_seconds`."""
    return min(max(KILL_DELAY, SCAN_SHARE * scan_seconds), MAX_KILL_DELAY)


QUIET_SCANS = 2
"""Scans in a row that must find no marked process before none is said to be left: a
process that forks and exits while one scan runs hides its child from that scan
(the child was not listed yet, the parent is gone when read), not from the next."""


class Killed(NamedTuple):
    none_left: bool
    """Whether no marked process is left (a killed one that still runs is found again)."""
    scan_seconds: float
    """The CPU time of one scan of the processes (the longest): its cost, not how long
    a busy machine kept the guard waiting for a core."""


def kill_marked(*markers: str) -> Killed:
    """SIGKILL every process marked with one of `markers`, again until none is left."""
    quiet = 0
    longest = 0.0
    for _ in range(ROUNDS):
        started = time.thread_time()
        pids = [pid for pid in marked(*markers) if pid != os.getpid()]
        longest = max(longest, time.thread_time() - started)
        quiet = 0 if pids else quiet + 1
        if quiet == QUIET_SCANS:
            return Killed(True, longest)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(PAUSE)
    return Killed(False, longest)


def serve(fd: int = 0, out: int = 1) -> None:
    """Obey commands from `fd` until it closes, then kill everything still watched.

    The kills of jobs that ended are gathered (see `gathering`) and done in
    one scan of the processes: a runner ending many short jobs would otherwise
    read every process's environment once per job. When none of their
    processes is left, that is said on `out`.
    """
    os.set_blocking(out, False)  # a stopped agent must never stop the kills
    deadlines: dict[str, float] = {}
    ended: set[str] = set()
    kill_at: float | None = None
    scan_seconds = 0.0
    pending = b""
    while True:
        due = [*deadlines.values(), *([kill_at] if kill_at is not None else [])]
        timeout = max(0.0, min(due) - time.monotonic()) if due else None
        ready, _, _ = select.select([fd], [], [], timeout)
        now = time.monotonic()
        for marker, deadline in list(deadlines.items()):
            if now >= deadline:
                del deadlines[marker]
                kill_marked(marker)
        if kill_at is not None and now >= kill_at:
            killed = kill_marked(*ended)
            if killed.none_left:
                _say_gone(out, sorted(ended))
            scan_seconds = killed.scan_seconds
            ended.clear()
            kill_at = None
        if not ready:
            continue
        data = os.read(fd, 65536)
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            finished = _obey(line.decode(errors="replace").split(), deadlines)
            if finished is not None:
                ended.add(finished)
                kill_at = kill_at or time.monotonic() + gathering(scan_seconds)
    if deadlines or ended:
        kill_marked(*deadlines, *ended)


_GONE_PER_LINE = 100
"""Markers per `gone` line: 2.5 KB at most, under the size a pipe writes whole (4 KB)."""


def _say_gone(out: int, markers: list[str]) -> None:
    """Tell the agent that the processes of `markers` are gone, or nothing when it
    cannot take it now (gone, or not reading): it then waits for their trees as if
    it had not been told."""
    for start in range(0, len(markers), _GONE_PER_LINE):
        line = " ".join(["gone", *markers[start : start + _GONE_PER_LINE]])
        with contextlib.suppress(OSError):
            os.write(out, line.encode() + b"\n")


def _obey(words: list[str], deadlines: dict[str, float]) -> str | None:
    """Carry out one command; -> the marker whose processes are to be killed, if any."""
    if len(words) == 3 and words[0] == "watch":
        with contextlib.suppress(ValueError):
            deadlines[words[1]] = float(words[2])
    elif len(words) == 2 and words[0] == "kill":
        deadlines.pop(words[1], None)
        return words[1]
    return None


KILL_GATHER = 0.05
"""Seconds the agent holds a kill before telling the guard, unless a watch goes first:
then one write, and one wake-up of the guard, carries a busy runner's job's end and
its next job's start (a wake-up of the guard cost ~0.07 ms of CPU here)."""


class Guard:
    """The agent's end of the guard: starts the process, tells it about leases and
    hears which ended jobs' processes are gone."""

    def __init__(
        self,
        process: asyncio.subprocess.Process | None,
        on_gone: Callable[[list[str]], None] = lambda markers: None,
    ) -> None:
        self._process = process
        self._held: list[bytes] = []
        """Commands not sent yet (kills: see KILL_GATHER)."""
        self._sending: asyncio.TimerHandle | None = None
        self._hearing = (
            asyncio.create_task(_hear(process.stdout, on_gone))
            if process is not None and process.stdout is not None
            else None
        )

    @classmethod
    async def start(cls, on_gone: Callable[[list[str]], None] = lambda markers: None) -> Guard:
        """A running guard, or one that does nothing where processes cannot be found;
        `on_gone` is told the markers of ended jobs none of whose processes is left."""
        if not os.path.isdir("/proc/self"):
            return cls(None)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "conveyor.runner.guard",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C meant for the agent must not end it first
            )
        except OSError as exc:
            logger.warning("no lease guard (%s): processes may outlive a killed runner", exc)
            return cls(None)
        return cls(process, on_gone)

    def watch(self, marker: str, deadline: float) -> None:
        """Have the job's processes killed at `deadline` (monotonic); told at once, as a
        job's processes may start right after."""
        self._held.append(f"watch {marker} {deadline!r}\n".encode())
        self._send()

    def kill(self, marker: str) -> None:
        """Have the job's processes killed (within KILL_GATHER, then guard.KILL_DELAY)."""
        self._held.append(f"kill {marker}\n".encode())
        if self._sending is None:
            self._sending = asyncio.get_running_loop().call_later(KILL_GATHER, self._send)

    async def close(self) -> None:
        """Close its input: it kills whatever is still watched, then exits."""
        self._send()
        process = self._process
        if process is None or process.stdin is None:
            return
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10.0)
        except TimeoutError:
            process.kill()
            await process.wait()
        if self._hearing is not None:
            await self._hearing  # its output ends with it

    def _send(self) -> None:
        """Write the held commands, in the order they came."""
        if self._sending is not None:
            self._sending.cancel()
            self._sending = None
        held, self._held = self._held, []
        process = self._process
        if not held or process is None or process.stdin is None or process.stdin.is_closing():
            return
        if process.returncode is not None:
            logger.warning("the lease guard has exited (status %s)", process.returncode)
            self._process = None
            return
        process.stdin.write(b"".join(held))


async def _hear(stdout: asyncio.StreamReader, on_gone: Callable[[list[str]], None]) -> None:
    async for line in stdout:
        words = line.decode(errors="replace").split()
        if words[:1] == ["gone"]:
            on_gone(words[1:])


if __name__ == "__main__":
    serve()
    sys.exit(0)

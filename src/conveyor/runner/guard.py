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
    kill <marker>               kill its processes now (the job ended or was abandoned)

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

MARKER_ENV = "CONVEYOR_JOB_MARKER"
ROUNDS = 20
"""Scans per kill: a process forked between a scan and its kill is found by the next one."""

logger = logging.getLogger("conveyor.runner")


def marked(marker: str, proc: str = "/proc") -> list[int]:
    """The ids of the processes whose environment holds `CONVEYOR_JOB_MARKER=<marker>`."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "environ"), "rb") as f:
                variables = f.read().split(b"\0")
        except OSError:  # gone, or not ours
            continue
        if needle in variables:
            found.append(int(entry))
    return found


def kill_marked(marker: str) -> int:
    """SIGKILL every marked process, again until none is left; -> how many were killed."""
    killed: set[int] = set()
    for _ in range(ROUNDS):
        pids = [pid for pid in marked(marker) if pid != os.getpid()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.01)
    return len(killed)


def serve(fd: int = 0) -> None:
    """Obey commands from `fd` until it closes, then kill everything still watched."""
    deadlines: dict[str, float] = {}
    pending = b""
    while True:
        timeout = None
        if deadlines:
            timeout = max(0.0, min(deadlines.values()) - time.monotonic())
        ready, _, _ = select.select([fd], [], [], timeout)
        for marker, deadline in list(deadlines.items()):
            if time.monotonic() >= deadline:
                del deadlines[marker]
                kill_marked(marker)
        if not ready:
            continue
        data = os.read(fd, 65536)
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            _obey(line.decode(errors="replace").split(), deadlines)
    for marker in deadlines:
        kill_marked(marker)


def _obey(words: list[str], deadlines: dict[str, float]) -> None:
    if len(words) == 3 and words[0] == "watch":
        with contextlib.suppress(ValueError):
            deadlines[words[1]] = float(words[2])
    elif len(words) == 2 and words[0] == "kill":
        deadlines.pop(words[1], None)
        kill_marked(words[1])


class Guard:
    """The agent's end of the guard: starts the process and tells it about leases."""

    def __init__(self, process: asyncio.subprocess.Process | None) -> None:
        self._process = process

    @classmethod
    async def start(cls) -> Guard:
        """A running guard, or one that does nothing where processes cannot be found."""
        if not os.path.isdir("/proc/self"):
            return cls(None)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "conveyor.runner.guard",
                stdin=asyncio.subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C meant for the agent must not end it first
            )
        except OSError as exc:
            logger.warning("no lease guard (%s): processes may outlive a killed runner", exc)
            return cls(None)
        return cls(process)

    def watch(self, marker: str, deadline: float) -> None:
        self._send(f"watch {marker} {deadline!r}")

    def kill(self, marker: str) -> None:
        self._send(f"kill {marker}")

    async def close(self) -> None:
        """Close its input: it kills whatever is still watched, then exits."""
        process = self._process
        if process is None or process.stdin is None:
            return
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10.0)
        except TimeoutError:
            process.kill()
            await process.wait()

    def _send(self, line: str) -> None:
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            return
        if process.returncode is not None:
            logger.warning("the lease guard has exited (status %s)", process.returncode)
            self._process = None
            return
        process.stdin.write(line.encode() + b"\n")


if __name__ == "__main__":
    serve()
    sys.exit(0)

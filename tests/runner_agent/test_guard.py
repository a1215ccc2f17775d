"""The lease guard: finding a job's processes by their marker, and killing them when told."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conveyor.runner import guard as guard_module
from conveyor.runner.agent import REUSE_AFTER
from conveyor.runner.guard import (
    KILL_DELAY,
    KILL_GATHER,
    MARKER_ENV,
    MAX_KILL_DELAY,
    PAUSE,
    ROUNDS,
    SCAN_SHARE,
    Guard,
    gathering,
    marked,
    serve,
)


def fake_proc(tmp_path: Path, environs: dict[str, bytes]) -> str:
    for name, environ in environs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "environ").write_bytes(environ)
    return str(tmp_path)


def test_a_marker_is_found_wherever_it_sits_in_the_environment(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        {
            "10": f"{MARKER_ENV}=aa\0PATH=/bin\0".encode(),  # first
            "11": f"HOME=/root\0{MARKER_ENV}=aa\0".encode(),  # last
            "12": f"HOME=/root\0{MARKER_ENV}=aa".encode(),  # last, without its NUL
            "13": f"HOME=/root\0{MARKER_ENV}=aab\0".encode(),  # another marker it starts
            "14": f"X{MARKER_ENV}=aa\0".encode(),  # another variable it ends
            "15": f"NOTE={MARKER_ENV}=aa\0".encode(),  # a value that mentions it
            "16": f"{MARKER_ENV}=bb\0".encode(),
            "self": f"{MARKER_ENV}=aa\0".encode(),  # not a process
        },
    )
    (tmp_path / "17").mkdir()  # gone, or not ours: no environ to read
    assert sorted(marked("aa", proc=proc)) == [10, 11, 12]
    assert sorted(marked("aa", "bb", proc=proc)) == [10, 11, 12, 16]
    assert marked(proc=proc) == []


def test_every_marker_variable_of_an_environment_is_looked_at(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {"20": f"{MARKER_ENV}=zz\0{MARKER_ENV}=aa\0".encode()})
    assert marked("aa", proc=proc) == [20]
    assert marked("a", "z", proc=proc) == []


def test_a_released_tree_serves_again_only_after_the_kill_of_what_its_job_left() -> None:
    # The agent tells the guard within KILL_GATHER, the kill starts within
    # MAX_KILL_DELAY; its rounds follow, each a pause and a scan (3 ms for 500
    # processes here; 10 ms allowed).
    assert KILL_GATHER + MAX_KILL_DELAY + ROUNDS * (PAUSE + 0.01) <= REUSE_AFTER


def test_none_is_left_only_after_two_quiet_scans(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the scans find: nothing, then a child forked while the first one ran, then
    # (killed) nothing twice.
    found = iter([[], [4242], [], []])
    killed: list[int] = []
    monkeypatch.setattr(guard_module, "marked", lambda *markers: next(found))
    monkeypatch.setattr(guard_module.os, "kill", lambda pid, sig: killed.append(pid))
    monkeypatch.setattr(guard_module, "PAUSE", 0.0)
    assert guard_module.kill_marked("m").none_left
    assert killed == [4242]
    assert next(found, None) is None  # every scan was needed


def test_a_process_that_outlives_every_round_is_not_said_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guard_module, "marked", lambda *markers: [4242])
    monkeypatch.setattr(guard_module.os, "kill", lambda pid, sig: None)
    monkeypatch.setattr(guard_module, "PAUSE", 0.0)
    assert not guard_module.kill_marked("m").none_left


def test_kills_are_gathered_longer_where_a_scan_takes_long() -> None:
    assert gathering(0.0007) == KILL_DELAY  # 80 processes here
    assert gathering(0.01) == 0.01 * SCAN_SHARE  # a scan is then at most 1/40 of a core
    assert gathering(5.0) == MAX_KILL_DELAY


def start_marked(marker: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sleep", "60"], env={**os.environ, MARKER_ENV: marker}, start_new_session=True
    )


def test_the_ended_jobs_processes_are_killed_together_and_soon() -> None:
    async def main() -> None:
        guard = await Guard.start()
        first, second, bystander = start_marked("e1"), start_marked("e2"), start_marked("e3")
        try:
            guard.watch("e3", time.monotonic() + 60)
            started = time.monotonic()
            guard.kill("e1")
            guard.kill("e2")
            for victim in (first, second):
                await asyncio.to_thread(victim.wait, 5)
                assert victim.returncode == -signal.SIGKILL
            assert time.monotonic() - started < 2.0
            assert bystander.poll() is None
        finally:
            bystander.kill()
            bystander.wait()
            await guard.close()

    asyncio.run(main())


def test_the_guard_says_when_an_ended_jobs_processes_are_gone() -> None:
    async def main() -> None:
        said: list[list[str]] = []
        heard = asyncio.Event()

        def on_gone(markers: list[str]) -> None:
            said.append(markers)
            heard.set()

        guard = await Guard.start(on_gone=on_gone)
        first, second = start_marked("g1"), start_marked("g2")
        try:
            guard.kill("g1")
            guard.kill("g2")
            await asyncio.wait_for(heard.wait(), 5)
            assert sorted(marker for markers in said for marker in markers) == ["g1", "g2"]
            for victim in (first, second):  # dead by then (a zombie is no process of theirs)
                assert await asyncio.to_thread(victim.wait, 1) == -signal.SIGKILL
        finally:
            await guard.close()

    asyncio.run(main())


def test_a_guard_whose_agent_reads_nothing_still_kills(tmp_path: Path) -> None:
    commands_read, commands = os.pipe()
    answers, answers_written = os.pipe()
    os.set_blocking(answers_written, False)
    with contextlib.suppress(BlockingIOError):
        while True:  # the agent is stopped: its end of the pipe is full
            os.write(answers_written, b"x" * 4096)
    os.set_blocking(answers_written, True)
    victim = start_marked("s1")
    guard = threading.Thread(target=serve, args=(commands_read, answers_written))
    guard.start()
    try:
        os.write(commands, b"kill s1\n")
        victim.wait(5)
        assert victim.returncode == -signal.SIGKILL
    finally:
        os.close(commands)
        guard.join(5)
        for fd in (commands_read, answers, answers_written):
            os.close(fd)
    assert not guard.is_alive()


def test_closing_the_guard_kills_what_it_was_told_to_and_what_it_watches() -> None:
    async def main() -> None:
        guard = await Guard.start()
        ended, watched = start_marked("c1"), start_marked("c2")
        guard.watch("c2", time.monotonic() + 600)
        guard.kill("c1")
        await guard.close()  # at once, before the gathered kill was due
        for victim in (ended, watched):
            await asyncio.to_thread(victim.wait, 5)
            assert victim.returncode == -signal.SIGKILL

    asyncio.run(main())

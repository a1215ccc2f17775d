"""A step's process: real output, real signals, real process groups, in the commands' loop."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.errors import ExecutionError
from conveyor.runner.loop import run_event_loop
from conveyor.runner.process import (
    ProcessResult,
    _exit_by_thread,
    kill_process_group,
    run_process,
)

ENV = {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"}
# Small grace periods keep the signal-sequence tests fast.
GRACE = 0.3


def run(
    script: str,
    tmp_path: Path,
    *,
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> tuple[list[str], ProcessResult]:
    lines: list[str] = []
    result = run_event_loop(
        run_process(
            ["bash", "-c", script],
            cwd=str(tmp_path),
            env=ENV,
            on_line=on_line or lines.append,
            timeout=timeout,
            interrupt_grace=GRACE,
            terminate_grace=GRACE,
        )
    )
    return lines, result


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids: list[int], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.02)
    return False


def test_lines_arrive_in_order_with_stderr_merged(tmp_path: Path) -> None:
    lines, result = run("echo one; echo two >&2; echo; printf 'three'", tmp_path)
    assert lines == ["one", "two", "", "three"]
    assert result == ProcessResult(0, pid=result.pid)


def test_crlf_is_stripped_but_inner_carriage_returns_stay(tmp_path: Path) -> None:
    lines, _ = run(r"printf 'a\r\nb\rc\r\n\r\nlast\r'", tmp_path)
    assert lines == ["a", "b\rc", "", "last"]


def test_invalid_utf8_and_nul_bytes_become_replacement_characters(tmp_path: Path) -> None:
    lines, _ = run(r"printf 'caf\xc3\xa9 \xff\xfe bad\n nul:\x00:end\n'", tmp_path)
    assert lines == ["café \ufffd\ufffd bad", " nul:\ufffd:end"]


def test_five_megabyte_line_is_split_on_character_boundaries(tmp_path: Path) -> None:
    # 2.5 M two-byte characters: a line far over the 1 MiB limit.
    lines, result = run(
        "python3 -c \"import sys; sys.stdout.write('é' * 2_500_000 + '\\nafter\\n')\"", tmp_path
    )
    assert result.exit_code == 0
    assert lines[-1] == "after"
    pieces = lines[:-1]
    assert len(pieces) == 5
    assert all(len(piece.encode()) <= 1024 * 1024 for piece in pieces)
    assert "".join(pieces) == "é" * 2_500_000


def test_exit_codes_including_death_by_signal(tmp_path: Path) -> None:
    assert run("exit 3", tmp_path)[1].exit_code == 3
    assert run("kill -KILL $$", tmp_path)[1].exit_code == 128 + signal.SIGKILL


def test_stdin_is_empty_and_env_and_cwd_are_passed(tmp_path: Path) -> None:
    lines, result = run('cat; echo "$LC_ALL|$(pwd)|${HOME-unset}"', tmp_path)
    assert lines == [f"C.UTF-8|{tmp_path}|unset"]
    assert result.exit_code == 0


def test_unstartable_processes_are_execution_errors(tmp_path: Path) -> None:
    with pytest.raises(ExecutionError, match="no-such-program"):
        run_event_loop(run_process(["no-such-program"], cwd=str(tmp_path), env=ENV, on_line=print))
    with pytest.raises(ExecutionError, match="working directory"):
        run_event_loop(run_process(["true"], cwd=str(tmp_path / "gone"), env=ENV, on_line=print))


def test_timeout_sends_sigint_then_sigterm_then_kills_the_group(tmp_path: Path) -> None:
    script = """
        trap 'echo got INT' INT
        trap 'echo got TERM' TERM
        sleep 1000 & echo child $!
        (sleep 1000 & echo grandchild $!; wait) &
        while true; do sleep 0.05; done
    """
    started = time.monotonic()
    lines, result = run(script, tmp_path, timeout=0.5)
    elapsed = time.monotonic() - started
    assert result.timed_out and not result.cancelled
    assert result.exit_code == 128 + signal.SIGKILL
    assert "got INT" in lines and "got TERM" in lines
    assert lines.index("got INT") < lines.index("got TERM")
    assert 1.0 < elapsed < 3.0
    pids = [int(line.split()[1]) for line in lines if line.split()[0] in ("child", "grandchild")]
    assert len(pids) == 2
    assert wait_gone(pids)


def test_process_that_stops_on_sigint_gets_no_further_signal(tmp_path: Path) -> None:
    started = time.monotonic()
    lines, result = run("echo ready; sleep 1000", tmp_path, timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert lines == ["ready"]
    assert result.timed_out and result.exit_code == 128 + signal.SIGINT


def test_return_is_prompt_when_an_escaped_grandchild_holds_the_pipe(tmp_path: Path) -> None:
    # setsid puts the grandchild outside the group: it survives and keeps stdout open.
    script = "setsid sleep 1000 & echo escaped $!; sleep 1000"
    started = time.monotonic()
    lines, result = run(script, tmp_path, timeout=0.3)
    elapsed = time.monotonic() - started
    escaped = int(lines[0].split()[1])
    try:
        assert result.timed_out
        assert elapsed < 1.5
    finally:
        os.kill(escaped, signal.SIGKILL)


def test_background_children_outlive_a_normal_exit_until_the_group_is_killed(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    lines, result = run("sleep 1000 & echo started $!", tmp_path)
    assert time.monotonic() - started < 1.5
    child = int(lines[0].split()[1])
    assert result.exit_code == 0 and alive(child)
    assert kill_process_group(result.pid)
    assert wait_gone([child])


def test_cancel_event_stops_the_process(tmp_path: Path) -> None:
    async def scenario() -> tuple[ProcessResult, float]:
        cancel = asyncio.Event()
        asyncio.get_running_loop().call_later(0.2, cancel.set)
        started = time.monotonic()
        result = await run_process(
            ["sleep", "1000"],
            cwd=str(tmp_path),
            env=ENV,
            on_line=print,
            cancel=cancel,
            interrupt_grace=GRACE,
        )
        return result, time.monotonic() - started

    result, elapsed = run_event_loop(scenario())
    assert result.cancelled and not result.timed_out
    assert elapsed < 1.0


def test_already_set_cancel_event_stops_at_once(tmp_path: Path) -> None:
    async def scenario() -> ProcessResult:
        cancel = asyncio.Event()
        cancel.set()
        return await run_process(
            ["sleep", "1000"],
            cwd=str(tmp_path),
            env=ENV,
            on_line=print,
            cancel=cancel,
            interrupt_grace=GRACE,
        )

    assert run_event_loop(scenario()).cancelled


def test_cancelling_the_caller_kills_the_group(tmp_path: Path) -> None:
    pids: list[int] = []

    async def scenario() -> None:
        task = asyncio.ensure_future(
            run_process(
                ["bash", "-c", "sleep 1000 & echo $!; sleep 1000"],
                cwd=str(tmp_path),
                env=ENV,
                on_line=lambda line: pids.append(int(line)),
            )
        )
        while not pids:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_event_loop(scenario())
    assert wait_gone(pids)


def test_error_in_line_callback_kills_the_process_and_propagates(tmp_path: Path) -> None:
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        raise ValueError("reporter broke")

    started = time.monotonic()
    with pytest.raises(ValueError, match="reporter broke"):
        run("echo first; echo second; sleep 1000", tmp_path, on_line=on_line)
    assert time.monotonic() - started < 2.0
    assert seen == ["first"]


def test_starting_a_trivial_script_is_cheap(tmp_path: Path) -> None:
    script = tmp_path / "s.sh"
    script.write_text("true\n")

    async def timings() -> list[float]:
        spent = []
        for _ in range(20):
            started = time.perf_counter()
            await run_process(
                ["bash", "-e", str(script)], cwd=str(tmp_path), env=ENV, on_line=print
            )
            spent.append(time.perf_counter() - started)
        return spent

    # A few milliseconds on an idle machine; the bound leaves room for a busy one.
    assert statistics.median(run_event_loop(timings())) < 0.05


def test_without_pidfds_a_thread_notices_the_exit(tmp_path: Path) -> None:
    async def main() -> int | None:
        process = subprocess.Popen(["bash", "-c", "sleep 0.1; exit 3"], cwd=tmp_path)
        await asyncio.wait_for(_exit_by_thread(asyncio.get_running_loop(), process), 5.0)
        return process.returncode

    assert run_event_loop(main()) == 3

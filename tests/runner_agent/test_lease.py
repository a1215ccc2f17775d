"""One job under its lease: the deadline, heartbeats, cancel, a lost lease, the guard."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor.errors import ConveyorError
from conveyor.runner.guard import MARKER_ENV, Guard, marked
from conveyor.runner.lease import LeaseClock, LeaseJob, build_assignment, lease_margin
from conveyor.runner.workspace import Slots

from .jobs import alive, assignment, read_pid
from .protocol_server import ProtocolServer


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_margin_is_a_quarter_of_the_ttl_up_to_30_s() -> None:
    assert lease_margin(1.0) == 0.25
    assert lease_margin(60.0) == 15.0
    assert lease_margin(600.0) == 30.0


def test_the_deadline_runs_from_the_last_acknowledged_renewal_as_sent() -> None:
    clock = Clock(100.0)
    lease = LeaseClock(10.0, 100.0, clock=clock)
    assert lease.deadline == 107.5
    clock.now = 107.0
    assert lease.remaining() == pytest.approx(0.5)
    lease.renewed(sent_at=105.0, ttl=10.0)  # sent at 105, acknowledged at 107
    assert lease.deadline == 112.5
    lease.renewed(sent_at=101.0, ttl=10.0)  # a late answer to an older renewal
    assert lease.deadline == 112.5
    lease.renewed(sent_at=106.0, ttl=600.0)  # the server may change the TTL
    assert lease.deadline == 106.0 + 600.0 - 30.0
    clock.now = 700.0
    assert lease.remaining() < 0


def test_an_assignment_becomes_the_executors_job() -> None:
    data = assignment("      - run: echo hi\n")
    data["matrix"] = {"os": "linux"}
    data["checkout"] = {"url": "/srv/repo", "sha": "a" * 40, "ref": "refs/heads/main"}
    job = build_assignment(data)
    assert (job.job_id, job.epoch, job.key, job.source_dir) == ("job-1", 1, "build", None)
    assert job.job.steps[0].run == "echo hi"
    assert job.matrix == {"os": "linux"}
    assert job.secrets == {"TOKEN": "hunter2"}
    assert job.checkout == {"url": "/srv/repo", "sha": "a" * 40, "ref": "refs/heads/main"}
    assert job.contexts["github"]["repository"] == "acme/widget"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"job": "deploy"}, "has no job 'deploy'"),
        ({"workflow": None}, "malformed"),
        ({"epoch": "one"}, "malformed"),
        ({"workflow": {"path": "ci.yml", "source": "jobs: ["}}, "ci.yml"),
    ],
)
def test_a_bad_assignment_is_a_clear_error(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConveyorError, match=message):
        build_assignment({**assignment("      - run: echo hi\n"), **change})


def run_job(server: ProtocolServer, data: dict[str, object], tmp_path: Path, during=None) -> float:
    """Run one LeaseJob to its end; `during(job)` runs beside it. -> seconds it took."""

    async def main() -> float:
        job = LeaseJob(server.channel(), Guard(None), data, slots=Slots(str(tmp_path)))
        start = time.monotonic()
        task = asyncio.create_task(job.run())
        try:
            if during is not None:
                await during(job)
            await asyncio.wait_for(task, 20.0)
            return time.monotonic() - start
        finally:
            await server.close()

    return asyncio.run(main())


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def transitions(server: ProtocolServer) -> list[str]:
    return [event for event in server.events() if event != "logs"]


def reported(server: ProtocolServer, kind: str) -> list[dict[str, object]]:
    return [e for c in server.reports() for e in c.body["events"] if e["type"] == kind]


def test_a_job_runs_and_reports_in_order(tmp_path: Path) -> None:
    server = ProtocolServer()
    steps = (
        '      - run: echo "fence=$CONVEYOR_FENCING_TOKEN key=${#CONVEYOR_IDEMPOTENCY_KEY}"\n'
        '      - run: echo "token is $TOKEN"\n'
        "        env: {TOKEN: '${{ secrets.TOKEN }}'}\n"
    )
    run_job(server, assignment(steps), tmp_path)
    assert transitions(server) == [
        "job_start",
        "step_start 0",
        "step_end 0",
        "step_start 1",
        "step_end 1",
        "job_end",
    ]
    assert server.writes() == ["report"]  # a short job: one report from start to end
    assert "fence=1 key=32" in server.lines()
    assert "token is ***" in server.lines()
    assert reported(server, "job_end")[0]["conclusion"] == "success"
    kept = list(tmp_path.rglob("*"))  # the job's tree, kept for the next job, holds nothing
    assert not [p for p in kept if p.is_file() and p.stat().st_size]
    assert not [p for p in kept if p.parent.parent.name == "workspace"]


def test_a_retry_restores_its_run_once_steps_and_runs_the_others_again(tmp_path: Path) -> None:
    server = ProtocolServer()
    steps = (
        "      - id: migrate\n"
        "        run: echo migrated; echo version=7 >> $GITHUB_OUTPUT\n"
        "        run-once: true\n"
        "        if: false\n"  # restored whatever its `if:` says now
        "      - id: build\n"
        "        run: echo built; echo n=1 >> $GITHUB_OUTPUT\n"
        "      - run: echo got ${{ steps.migrate.outputs.version }}"
        " ${{ steps.migrate.outcome }} ${{ steps.build.outputs.n }}\n"
    )
    data = assignment(steps, epoch=3)
    data["completed_steps"] = [
        {"index": 0, "epoch": 2, "outputs": {"version": "7"}},
        {"index": 1, "epoch": 2, "outputs": {"n": "0"}},  # not run-once: runs again
    ]
    run_job(server, data, tmp_path)
    assert transitions(server) == [
        "job_start",
        "step_end 0",
        "step_start 1",
        "step_end 1",
        "step_start 2",
        "step_end 2",
        "job_end",
    ]
    restored = reported(server, "step_end")[0]
    assert (restored["outcome"], restored["conclusion"], restored["restored"]) == (
        "success",
        "success",
        True,
    )
    assert restored["outputs"] == {"version": "7"}
    assert "restored" not in reported(server, "step_end")[1]
    lines = server.lines()
    assert "migrated" not in lines and "built" in lines and "got 7 success 1" in lines
    assert "Already completed (recorded under fencing token 2); not run again (run-once)." in lines


def test_a_cancel_from_the_server_reaches_the_running_step(tmp_path: Path) -> None:
    server = ProtocolServer()
    steps = "      - run: echo started; sleep 30\n      - run: echo cleanup\n        if: always()\n"

    async def cancel_once_started(job: LeaseJob) -> None:
        await until(lambda: "started" in server.lines())
        server.cancel_requested = True

    took = run_job(
        server, assignment(steps, heartbeat_interval=0.05), tmp_path, cancel_once_started
    )
    assert took < 5.0
    finished = reported(server, "step_end")
    assert finished[0]["outcome"] == "cancelled"
    assert finished[1]["outcome"] == "success"
    assert "cleanup" in server.lines()
    assert reported(server, "job_end")[0]["conclusion"] == "cancelled"


def test_without_acknowledged_renewals_the_job_is_killed_before_the_ttl(tmp_path: Path) -> None:
    server = ProtocolServer()
    pidfile = tmp_path / "pid"
    steps = f"      - run: echo $$ > {pidfile}; exec sleep 30\n"

    async def cut_off(job: LeaseJob) -> None:
        await until(lambda: read_pid(str(pidfile)) is not None)
        server.reachable = False

    (tmp_path / "jobs").mkdir()
    data = assignment(steps, lease_ttl=1.0, heartbeat_interval=0.1)
    took = run_job(server, data, tmp_path / "jobs", cut_off)
    pid = read_pid(str(pidfile))
    assert pid is not None and not alive(pid)
    assert took < 1.0  # TTL 1 s: given up at 0.75 s, before the server could reassign it
    assert "job_end" not in server.events()


def test_a_job_whose_lease_ran_out_before_it_arrived_is_never_started(tmp_path: Path) -> None:
    server = ProtocolServer()
    pidfile = tmp_path / "pid"
    data = assignment(f"      - run: echo $$ > {pidfile}\n", lease_ttl=1.0)

    async def main() -> None:
        late = time.monotonic() - 5.0  # the answer that handed it over took that long
        job = LeaseJob(
            server.channel(), Guard(None), data, slots=Slots(str(tmp_path)), received_at=late
        )
        try:
            await asyncio.wait_for(job.run(), 10.0)
        finally:
            await server.close()
        assert job.aborted

    asyncio.run(main())
    assert not pidfile.exists()
    assert server.writes() == []


def test_a_refused_heartbeat_abandons_the_job_at_once(tmp_path: Path) -> None:
    server = ProtocolServer()
    pidfile = tmp_path / "pid"
    steps = f"      - run: echo $$ > {pidfile}; exec sleep 30\n"

    async def reassign(job: LeaseJob) -> None:
        # once the step runs and its start has arrived, the next write is a heartbeat
        await until(
            lambda: read_pid(str(pidfile)) is not None and "step_start 0" in server.events()
        )
        server.epoch = 2  # the reaper re-queued it and another runner took it

    (tmp_path / "jobs").mkdir()
    took = run_job(server, assignment(steps, heartbeat_interval=0.05), tmp_path / "jobs", reassign)
    pid = read_pid(str(pidfile))
    assert pid is not None and not alive(pid)
    assert took < 2.0
    assert server.writes()[-1] == "heartbeat"
    assert "job_end" not in server.events()


def test_a_malformed_assignment_fails_the_job(tmp_path: Path) -> None:
    server = ProtocolServer()
    run_job(server, {**assignment("      - run: true\n"), "job": "nope"}, tmp_path)
    assert server.events() == ["job_end"]
    assert reported(server, "job_end")[0]["conclusion"] == "failure"
    assert "has no job 'nope'" in str(reported(server, "job_end")[0]["reason"])


def start_marked(marker: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sleep", "60"], env={**os.environ, MARKER_ENV: marker}, start_new_session=True
    )


def test_the_guard_kills_marked_processes_when_their_deadline_passes() -> None:
    async def main() -> None:
        guard = await Guard.start()
        victim, bystander = start_marked("m1"), start_marked("m2")
        try:
            assert marked("m1") == [victim.pid]
            guard.watch("m1", time.monotonic() + 0.2)
            guard.watch("m2", time.monotonic() + 60)
            await asyncio.sleep(0.1)
            assert victim.poll() is None
            await asyncio.to_thread(victim.wait, 5)
            assert victim.returncode == -signal.SIGKILL
            assert bystander.poll() is None
        finally:
            bystander.kill()
            bystander.wait()
            await guard.close()

    asyncio.run(main())


AGENT = """
import asyncio, os, subprocess, sys, time
from conveyor.runner.guard import MARKER_ENV, Guard

async def main():
    guard = await Guard.start()
    child = subprocess.Popen(["sleep", "60"], env={**os.environ, MARKER_ENV: "m3"},
                             start_new_session=True)
    guard.watch("m3", time.monotonic() + 600)
    print(child.pid, guard._process.pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_the_guard_kills_the_jobs_of_an_agent_killed_with_sigkill() -> None:
    with subprocess.Popen([sys.executable, "-c", AGENT], stdout=subprocess.PIPE) as agent:
        assert agent.stdout is not None
        child, guard = (int(word) for word in agent.stdout.readline().split())
        assert alive(child) and alive(guard)
        agent.kill()
    deadline = time.monotonic() + 5
    while (alive(child) or alive(guard)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(child)
    assert not alive(guard)

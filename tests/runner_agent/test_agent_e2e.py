"""The agent as a process against the real server: jobs, registration, signals, outages."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.cluster import Runner

from .jobs import alive, wait_until
from .service import AgentProcess, ServerProcess, dispatch, job_log, jobs_of, make_repo, wait_run

TTL = 3.0
HEARTBEAT = 0.5


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    started = ServerProcess(tmp_path / "data", lease_ttl=TTL, heartbeat=HEARTBEAT).start()
    yield started
    started.stop()


@pytest.fixture
def agents(server: ServerProcess, tmp_path: Path) -> Iterator[list[AgentProcess]]:
    """Agents the test starts with `start(agents, server, name)`; all killed at the end."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.kill()


def start(
    agents: list[AgentProcess], server: ServerProcess, name: str, **kw: float
) -> AgentProcess:
    workdir = server.data_dir.parent / name
    agent = AgentProcess(server.url, server.registration_token, workdir, **kw).start()
    agents.append(agent)
    return agent


PIPELINE = """
    on: workflow_dispatch
    jobs:
      build:
        runs-on: ubuntu-latest
        steps:
          - uses: actions/checkout@v4
          - run: |
              echo "building $(cat greeting.txt)"
              echo "fence=$CONVEYOR_FENCING_TOKEN key=${#CONVEYOR_IDEMPOTENCY_KEY}"
              mkdir out && cp greeting.txt out/ && echo built > out/result.txt
          - uses: actions/upload-artifact@v4
            with: {name: bundle, path: out/}
      test:
        needs: build
        runs-on: [self-hosted, linux]
        steps:
          - uses: actions/download-artifact@v4
            with: {name: bundle, path: got}
          - run: cat got/greeting.txt got/result.txt
"""


def test_a_run_goes_end_to_end_through_the_agent(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"ci.yml": PIPELINE}, {"greeting.txt": "hello\n"})
    agent = start(agents, server, "runner-a")
    with server.api() as api:
        run_id = dispatch(api, repo, "acme/widget", "ci.yml")
        run = wait_run(api, run_id)
        assert run["conclusion"] == "success", agent.log()
        build = job_log(api, run_id, "build")
        assert "building hello" in build
        assert "fence=1 key=32" in build
        assert job_log(api, run_id, "test")[-2:] == ["hello", "built"]
    credentials = agent.workdir / "runner.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert server.registration_token not in credentials.read_text()
    # Job directories are kept for the next job, emptied: no file, script or env file keeps data.
    kept = list((agent.workdir / "jobs").rglob("*"))
    assert not [p for p in kept if p.is_file() and p.stat().st_size]
    assert not [p for p in kept if p.parent.parent.name == "workspace"]

    # A restarted agent uses the runner token it saved instead of registering again.
    agent.signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    assert os.listdir(agent.workdir / "jobs") == []  # a stopped agent leaves no job directory
    saved = credentials.read_text()
    again = AgentProcess(server.url, "not-a-valid-token", agent.workdir).start()
    agents.append(again)
    with server.api() as api:
        run = wait_run(api, dispatch(api, repo, "acme/widget2", "ci.yml"))
        assert run["conclusion"] == "success", again.log()
    assert credentials.read_text() == saved
    assert "Traceback" not in agent.log() + again.log()


PAIR = """
    on: workflow_dispatch
    jobs:
      pair:
        runs-on: ubuntu-latest
        strategy:
          matrix:
            side: [left, right]
        steps:
          - run: |
              touch "MET/${{ matrix.side }}"
              for _ in $(seq 400); do
                [ -e MET/left ] && [ -e MET/right ] && exit 0
                sleep 0.05
              done
              echo "the other job did not start alongside this one" >&2
              exit 1
"""


def test_a_runner_at_concurrency_2_runs_two_jobs_at_once(
    server: ServerProcess, tmp_path: Path
) -> None:
    """`conveyor runner --concurrency 2`: each job waits for the other to have started."""
    met = tmp_path / "met"
    met.mkdir()
    repo = make_repo(tmp_path / "repo", {"pair.yml": PAIR.replace("MET", str(met))}, {})
    runner = Runner(server, tmp_path / "runner-a", concurrency=2).start()
    try:
        with server.api() as api:
            run = wait_run(api, dispatch(api, repo, "acme/pair", "pair.yml"))
            assert run["conclusion"] == "success", runner.log()
            jobs = [api.get(f"/jobs/{j['id']}").json() for j in jobs_of(api, run["id"])]
    finally:
        runner.stop()
    assert [j["conclusion"] for j in jobs] == ["success", "success"]
    saved = json.loads((runner.workdir / "runner.json").read_text())
    assert {j["runner_id"] for j in jobs} == {saved["runner_id"]}
    # The steps' times are the runner's (a job's own are when its reports arrived).
    spans = sorted((step["started_at"], step["completed_at"]) for j in jobs for step in j["steps"])
    (_, first_ended), (second_started, _) = spans
    assert second_started < first_ended
    assert "Traceback" not in runner.log()


def ledger_of(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_kill_9_mid_job_the_job_runs_again_elsewhere_and_the_orphan_dies(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    workflow = f"""
        on: workflow_dispatch
        jobs:
          deploy:
            runs-on: ubuntu-latest
            steps:
              - run: |
                  echo "start $CONVEYOR_FENCING_TOKEN $$" >> {ledger}
                  if [ "$CONVEYOR_FENCING_TOKEN" = 1 ]; then sleep 30; fi
                  echo "end $CONVEYOR_FENCING_TOKEN" >> {ledger}
    """
    repo = make_repo(tmp_path / "repo", {"deploy.yml": workflow}, {})
    first = start(agents, server, "runner-a")
    with server.api() as api:
        run_id = dispatch(api, repo, "acme/deploy", "deploy.yml")
        wait_until(lambda: len(ledger_of(ledger)) == 1, what="the first attempt")
        orphan = int(ledger_of(ledger)[0][2])
        first.kill()
        killed = time.monotonic()
        # The guard ends the step as soon as the agent is gone, long before the lease runs out.
        wait_until(lambda: not alive(orphan), timeout=TTL, what="the orphaned step to die")
        assert time.monotonic() - killed < TTL - 1
        start(agents, server, "runner-b")
        run = wait_run(api, run_id)
        assert run["conclusion"] == "success"
        assert jobs_of(api, run_id)[0]["retry_count"] == 1
    assert [entry[:2] for entry in ledger_of(ledger)] == [
        ["start", "1"],
        ["start", "2"],
        ["end", "2"],
    ]


def test_a_frozen_agent_gives_its_job_up_and_its_late_writes_are_refused(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    import asyncio

    from conveyor.errors import LeaseLost
    from conveyor.runner.agent import load_credentials
    from conveyor.runner.http_channel import HttpChannel

    ledger = tmp_path / "ledger"
    workflow = f"""
        on: workflow_dispatch
        jobs:
          work:
            runs-on: ubuntu-latest
            steps:
              - run: |
                  echo "attempt $CONVEYOR_FENCING_TOKEN $$" >> {ledger}
                  echo "attempt $CONVEYOR_FENCING_TOKEN"
                  if [ "$CONVEYOR_FENCING_TOKEN" = 1 ]; then sleep 30; fi
                  echo "done $CONVEYOR_FENCING_TOKEN"
    """
    quick = (
        "on: workflow_dispatch\njobs:\n  ok:\n    runs-on: linux\n    steps:\n      - run: true\n"
    )
    repo = make_repo(tmp_path / "repo", {"work.yml": workflow, "quick.yml": quick}, {})
    frozen = start(agents, server, "runner-a")
    with server.api() as api:
        run_id = dispatch(api, repo, "acme/work", "work.yml")
        wait_until(lambda: "attempt 1" in job_log(api, run_id), what="the first attempt")
        step = int(ledger_of(ledger)[0][2])
        frozen.signal(signal.SIGSTOP)
        # Its step dies at the lease deadline (TTL − margin) although the agent cannot act.
        wait_until(lambda: not alive(step), timeout=TTL, what="the frozen agent's step to die")
        takeover = start(agents, server, "runner-b")
        run = wait_run(api, run_id)
        assert run["conclusion"] == "success"
        assert [e[:2] for e in ledger_of(ledger)] == [["attempt", "1"], ["attempt", "2"]]
        frozen.signal(signal.SIGCONT)
        wait_until(lambda: "abandoning it" in frozen.log(), what="the thawed agent to give up")
        texts = job_log(api, run_id)
        assert "done 2" in texts and "done 1" not in texts

        # Whatever it might still send under epoch 1 is refused.
        credentials = load_credentials(str(frozen.workdir))
        assert credentials is not None
        job_id = jobs_of(api, run_id)[0]["id"]

        async def late_write() -> None:
            channel = HttpChannel(server.url, credentials.token)
            try:
                await channel.report(job_id, 1, [{"type": "logs", "lines": [[0, "done 1"]]}])
            finally:
                await channel.aclose()

        with pytest.raises(LeaseLost):
            asyncio.run(late_write())
        assert "done 1" not in job_log(api, run_id)

        # The thawed agent carries on with new work.
        takeover.signal(signal.SIGTERM)
        assert takeover.wait(10) == 0
        again = dispatch(api, repo, "acme/work2", "quick.yml")
        assert wait_run(api, again)["conclusion"] == "success", frozen.log()
    assert "Traceback" not in frozen.log()


INTERRUPTIBLE = """
    on: workflow_dispatch
    jobs:
      work:
        runs-on: ubuntu-latest
        steps:
          - run: |
              trap 'echo "got SIGINT"; exit 130' INT
              echo ready
              while true; do sleep 0.1; done
          - if: always()
            run: echo "cleanup ran"
"""


def test_a_cancel_from_the_server_reaches_the_running_step(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"work.yml": INTERRUPTIBLE}, {})
    start(agents, server, "runner-a")
    with server.api() as api:
        run_id = dispatch(api, repo, "acme/work", "work.yml")
        wait_until(lambda: "ready" in job_log(api, run_id), what="the step to start")
        assert api.post(f"/runs/{run_id}/cancel").status_code == 202
        asked = time.monotonic()
        run = wait_run(api, run_id)
        assert time.monotonic() - asked < HEARTBEAT + 3.0
        assert run["conclusion"] == "cancelled"
        texts = job_log(api, run_id)
        assert "got SIGINT" in texts and "cleanup ran" in texts
        (job,) = jobs_of(api, run_id)
        steps = api.get(f"/jobs/{job['id']}").json()["steps"]
        assert [s["outcome"] for s in steps] == ["cancelled", "success"]


def test_a_cancel_reaches_a_quiet_step_at_once_whatever_the_heartbeat_interval(
    agents: list[AgentProcess], tmp_path: Path
) -> None:
    """The server holds each heartbeat for an interval (here 30 s) and answers it as soon
    as the job's cancel is asked for: the step, which prints nothing, hears of it at once."""
    server = ServerProcess(tmp_path / "slow-beats", lease_ttl=120.0, heartbeat=30.0).start()
    try:
        repo = make_repo(tmp_path / "repo", {"work.yml": INTERRUPTIBLE}, {})
        start(agents, server, "runner-a")
        with server.api() as api:
            run_id = dispatch(api, repo, "acme/work", "work.yml")
            wait_until(lambda: "ready" in job_log(api, run_id), what="the step to start")
            time.sleep(1.5)  # the first heartbeat is held by now
            assert api.post(f"/runs/{run_id}/cancel").status_code == 202
            asked = time.monotonic()
            run = wait_run(api, run_id)
            assert time.monotonic() - asked < 3.0
            assert run["conclusion"] == "cancelled"
            assert "got SIGINT" in job_log(api, run_id)
    finally:
        server.stop()


def test_sigterm_lets_the_running_job_finish_and_exits_0(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    workflow = """
        on: workflow_dispatch
        jobs:
          work:
            runs-on: ubuntu-latest
            steps:
              - run: echo begin; sleep 1; echo finish
    """
    repo = make_repo(tmp_path / "repo", {"work.yml": workflow}, {})
    agent = start(agents, server, "runner-a")
    with server.api() as api:
        run_id = dispatch(api, repo, "acme/work", "work.yml")
        wait_until(lambda: "begin" in job_log(api, run_id), what="the step to start")
        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 0
        run = wait_run(api, run_id, timeout=5)
        assert run["conclusion"] == "success"
        assert "finish" in job_log(api, run_id)


def test_past_the_grace_period_the_job_is_cancelled(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"work.yml": INTERRUPTIBLE}, {})
    agent = start(agents, server, "runner-a", grace=0.5)
    with server.api() as api:
        run_id = dispatch(api, repo, "acme/work", "work.yml")
        wait_until(lambda: "ready" in job_log(api, run_id), what="the step to start")
        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 0
        run = wait_run(api, run_id, timeout=5)
        assert run["conclusion"] == "cancelled"
        (job,) = jobs_of(api, run_id)
        assert "runner was stopped" in job["reason"]
        texts = job_log(api, run_id)
        assert "got SIGINT" in texts and "cleanup ran" in texts


def test_the_agent_waits_out_an_unreachable_server(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    server.stop()
    agent = start(agents, server, "runner-a")
    wait_until(lambda: "retrying" in agent.log(), what="the agent to notice")
    time.sleep(1.0)
    assert agent.proc is not None and agent.proc.poll() is None
    server.start()
    repo = make_repo(tmp_path / "repo", {"ci.yml": PIPELINE}, {"greeting.txt": "hello\n"})
    with server.api() as api:
        run = wait_run(api, dispatch(api, repo, "acme/widget", "ci.yml"))
        assert run["conclusion"] == "success", agent.log()
    assert "reachable again" in agent.log()
    assert "Traceback" not in agent.log()


def test_lines_printed_while_the_server_is_down_arrive_later(
    agents: list[AgentProcess], tmp_path: Path
) -> None:
    # A longer lease: the outage (kill, restart) must end before the runner gives up.
    server = ServerProcess(tmp_path / "slow-data", lease_ttl=8.0, heartbeat=0.5).start()
    workflow = """
        on: workflow_dispatch
        jobs:
          work:
            runs-on: ubuntu-latest
            steps:
              - run: for i in $(seq 1 30); do echo "line $i"; sleep 0.1; done
    """
    repo = make_repo(tmp_path / "repo", {"work.yml": workflow}, {})
    try:
        agent = start(agents, server, "runner-a")
        with server.api() as api:
            run_id = dispatch(api, repo, "acme/work", "work.yml")
            wait_until(lambda: "line 1" in job_log(api, run_id), what="the first line")
        server.stop()
        time.sleep(1.0)
        server.start()
        with server.api() as api:
            run = wait_run(api, run_id)
            assert run["conclusion"] == "success", agent.log()
            texts = [t for t in job_log(api, run_id) if t.startswith("line ")]
            assert texts == [f"line {i}" for i in range(1, 31)]
    finally:
        server.stop()


def test_bad_arguments_end_the_agent_with_a_clear_message(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    wrong = AgentProcess(server.url, "no-such-token", tmp_path / "wrong").start()
    agents.append(wrong)
    assert wrong.wait(15) == 1
    assert "the server refused the token: invalid token (401 unauthorized)" in wrong.log()

    bad_url = AgentProcess("localhost:8080", "token", tmp_path / "bad-url").start()
    agents.append(bad_url)
    assert bad_url.wait(15) == 2
    assert "must start with http:// or https://" in bad_url.log()

    first = start(agents, server, "shared")
    wait_until(lambda: "waiting for jobs" in first.log(), what="the first agent")
    second = AgentProcess(server.url, server.registration_token, first.workdir).start()
    agents.append(second)
    assert second.wait(15) == 2
    assert "another runner is using it" in second.log()
    assert "Traceback" not in wrong.log() + bad_url.log() + second.log()


def test_the_runner_command_as_the_readme_gives_it_runs_steps(
    server: ServerProcess, tmp_path: Path
) -> None:
    """`conveyor runner --url … --token …` from any directory: the default work directory
    is relative to it, and the job's scripts and workspace must be found from anywhere."""
    repo = make_repo(tmp_path / "repo", {"ci.yml": PIPELINE}, {"greeting.txt": "hello\n"})
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    command = [sys.executable, "-m", "conveyor", "runner", "--url", server.url]
    command += ["--token", server.registration_token]
    with open(tmp_path / "cli-runner.log", "wb") as log:
        runner = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        with server.api() as api:
            run = wait_run(api, dispatch(api, repo, "acme/widget", "ci.yml"))
            assert run["conclusion"] == "success", (tmp_path / "cli-runner.log").read_text()
        assert (cwd / ".conveyor-runner" / "runner.json").is_file()
    finally:
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(15) == 0


MATRIX = """
    on: workflow_dispatch
    jobs:
      work:
        runs-on: ubuntu-latest
        strategy:
          matrix:
            n: [1, 2, 3]
        steps:
          - run: echo "begin ${{ matrix.n }}"; sleep 0.5
"""


def test_the_next_job_comes_with_the_answer_to_the_last_ones_end(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"m.yml": MATRIX}, {})
    agent = start(agents, server, "runner-a")
    with server.api() as api:
        run = wait_run(api, dispatch(api, repo, "acme/m", "m.yml"))
        assert run["conclusion"] == "success", agent.log()
    # one job came from a poll; each of the others with the end of the one before
    assert agent.log().count("handed over with the end of job") == 2, agent.log()


def test_a_stopping_runner_takes_no_job_with_its_last_report(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"m.yml": MATRIX}, {})
    agent = start(agents, server, "runner-a")
    with server.api() as api:
        run_id = dispatch(api, repo, "acme/m", "m.yml")
        wait_until(
            lambda: any(job["status"] == "running" for job in jobs_of(api, run_id)),
            what="a job to start",
        )
        agent.signal(signal.SIGTERM)
        assert agent.wait(15) == 0
        statuses = sorted(job["status"] for job in jobs_of(api, run_id))
        assert statuses == ["completed", "queued", "queued"], agent.log()
    assert "handed over" not in agent.log()

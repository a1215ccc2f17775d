"""Crash tests with real processes: killed and frozen runners, a killed server."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.service.cluster import Runner, Server, jobs_of, make_repo, wait_run

TTL = 3.0


def _dispatch(api, repo: Path, name: str, path: str) -> str:
    repo_id = api.post("/api/v1/repositories", json={"name": name, "url": str(repo)}).json()["id"]
    wf = api.post("/api/v1/workflows", json={"repository_id": repo_id, "path": path})
    assert wf.status_code == 201, wf.text
    response = api.post(f"/api/v1/workflows/{wf.json()['id']}/dispatch", json={"inputs": {}})
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_killed_runner_job_is_retried_elsewhere_and_never_overlaps(
    tmp_path: Path, database_url
) -> None:
    ledger = tmp_path / "ledger"
    wf = f"""
        on: workflow_dispatch
        jobs:
          deploy:
            runs-on: ubuntu-latest
            steps:
              - run: |
                  echo "start $CONVEYOR_FENCING_TOKEN $(date +%s.%N) $GITHUB_WORKSPACE" >> {ledger}
                  if [ "$CONVEYOR_FENCING_TOKEN" = 1 ]; then sleep 60; fi
                  echo "end $CONVEYOR_FENCING_TOKEN $(date +%s.%N) $GITHUB_WORKSPACE" >> {ledger}
    """
    repo = make_repo(tmp_path / "repo", {"deploy.yml": wf})
    server = Server(tmp_path / "data", database_url, lease_ttl=TTL).start()
    first = Runner(server, tmp_path / "runner-a").start()
    second = Runner(server, tmp_path / "runner-b")
    try:
        with server.api() as api:
            run_id = _dispatch(api, repo, "acme/deploy", ".github/workflows/deploy.yml")
            _wait_for(lambda: len(_lines(ledger)) == 1)
            first.signal(signal.SIGKILL)
            killed_at = time.time()
            second.start()
            run = wait_run(api, run_id, timeout=60)
            assert run["conclusion"] == "success", second.log()
            [job] = jobs_of(api, run_id)
            assert job["retry_count"] == 1
        entries = [line.split() for line in _lines(ledger)]
        assert [(e[0], e[1]) for e in entries] == [("start", "1"), ("start", "2"), ("end", "2")]
        assert "runner-a" in entries[0][3] and "runner-b" in entries[1][3]
        # the second execution began only after the first runner was gone
        assert float(entries[1][2]) > killed_at
    finally:
        first.stop()
        second.stop()
        server.kill()


def test_a_retry_does_not_run_a_completed_run_once_step_again(
    tmp_path: Path, database_url: str | None
) -> None:
    ledger = tmp_path / "ledger"
    wf = f"""
        on: workflow_dispatch
        jobs:
          deploy:
            runs-on: ubuntu-latest
            outputs:
              version: ${{{{ steps.migrate.outputs.version }}}}
            steps:
              - id: migrate
                run-once: true
                run: |
                  echo "migrate $CONVEYOR_FENCING_TOKEN" >> {ledger}
                  echo "version=7-$CONVEYOR_FENCING_TOKEN" >> "$GITHUB_OUTPUT"
              - run: |
                  echo "wait $CONVEYOR_FENCING_TOKEN" >> {ledger}
                  if [ "$CONVEYOR_FENCING_TOKEN" = 1 ]; then sleep 60; fi
              - run: echo "saw ${{{{ steps.migrate.outputs.version }}}}" >> {ledger}
          check:
            needs: deploy
            runs-on: ubuntu-latest
            steps:
              - run: echo "needs ${{{{ needs.deploy.outputs.version }}}}" >> {ledger}
    """
    repo = make_repo(tmp_path / "repo", {"deploy.yml": wf})
    server = Server(tmp_path / "data", database_url, lease_ttl=TTL).start()
    first = Runner(server, tmp_path / "runner-a").start()
    second = Runner(server, tmp_path / "runner-b")
    try:
        with server.api() as api:
            run_id = _dispatch(api, repo, "acme/deploy", ".github/workflows/deploy.yml")

            def migrated() -> bool:
                jobs = jobs_of(api, run_id)
                steps = api.get(f"/api/v1/jobs/{jobs[0]['id']}").json()["steps"] if jobs else []
                return bool(steps) and steps[0]["status"] == "completed"

            _wait_for(lambda: _lines(ledger) == ["migrate 1", "wait 1"] and migrated())
            first.signal(signal.SIGKILL)
            second.start()
            run = wait_run(api, run_id, timeout=60)
            assert run["conclusion"] == "success", second.log()
            deploy = jobs_of(api, run_id)[0]
            assert (deploy["key"], deploy["retry_count"]) == ("deploy", 1)
            step = api.get(f"/api/v1/jobs/{deploy['id']}").json()["steps"][0]
            log = api.get(f"/api/v1/jobs/{deploy['id']}/logs").json()["lines"]
        assert (step["status"], step["conclusion"]) == ("skipped", "success")
        assert step["outputs"] == {"version": "7-1"}
        why = "Already completed (recorded under fencing token 1); not run again (run-once)."
        assert (0, why) in [(line["step"], line["text"]) for line in log]
        assert _lines(ledger) == ["migrate 1", "wait 1", "wait 2", "saw 7-1", "needs 7-1"]
    finally:
        first.stop()
        second.stop()
        server.kill()


def test_frozen_runner_late_writes_are_refused(tmp_path: Path, database_url) -> None:
    wf = """
        on: workflow_dispatch
        jobs:
          work:
            runs-on: ubuntu-latest
            steps:
              - run: |
                  echo "attempt $CONVEYOR_FENCING_TOKEN"
                  sleep 2
                  echo "done $CONVEYOR_FENCING_TOKEN"
    """
    repo = make_repo(tmp_path / "repo", {"work.yml": wf})
    server = Server(tmp_path / "data", database_url, lease_ttl=TTL).start()
    frozen = Runner(server, tmp_path / "runner-a").start()
    takeover = Runner(server, tmp_path / "runner-b")
    try:
        with server.api() as api:
            run_id = _dispatch(api, repo, "acme/work", ".github/workflows/work.yml")

            def started() -> bool:
                jobs = jobs_of(api, run_id)
                if not jobs or jobs[0]["status"] != "running":
                    return False
                log = api.get(f"/api/v1/jobs/{jobs[0]['id']}/logs").json()["lines"]
                return "attempt 1" in [line["text"] for line in log]

            _wait_for(started)
            frozen.signal(signal.SIGSTOP)
            takeover.start()
            run = wait_run(api, run_id, timeout=60)
            assert run["conclusion"] == "success"
            frozen.signal(signal.SIGCONT)
            time.sleep(TTL)  # give the thawed runner time to try its late writes
            [job] = jobs_of(api, run_id)
            assert job["retry_count"] == 1
            texts = [
                line["text"] for line in api.get(f"/api/v1/jobs/{job['id']}/logs").json()["lines"]
            ]
            assert "attempt 2" in texts and "done 2" in texts
            assert "done 1" not in texts
            assert api.get(f"/api/v1/runs/{run_id}").json()["conclusion"] == "success"
    finally:
        frozen.signal(signal.SIGCONT)
        frozen.stop()
        takeover.stop()
        server.kill()


def test_killed_server_restarts_and_every_run_concludes(tmp_path: Path, database_url) -> None:
    wf = """
        on: workflow_dispatch
        jobs:
          one:
            runs-on: ubuntu-latest
            steps:
              - run: sleep 1; echo one
          two:
            needs: one
            runs-on: ubuntu-latest
            steps:
              - run: sleep 1; echo two
          three:
            needs: two
            runs-on: ubuntu-latest
            steps:
              - run: echo three
    """
    repo = make_repo(tmp_path / "repo", {"chain.yml": wf})
    server = Server(tmp_path / "data", database_url, lease_ttl=TTL).start()
    runner = Runner(server, tmp_path / "runner").start()
    try:
        with server.api() as api:
            run_id = _dispatch(api, repo, "acme/chain", ".github/workflows/chain.yml")
            _wait_for(lambda: any(j["status"] == "running" for j in jobs_of(api, run_id)))
        server.kill(signal.SIGKILL)
        server.start()
        with server.api() as api:
            run = wait_run(api, run_id, timeout=60)
            assert run["conclusion"] == "success", runner.log()
            assert sorted(j["key"] for j in jobs_of(api, run_id)) == ["one", "three", "two"]
    finally:
        runner.stop()
        server.kill()

"""Workflow concurrency groups end to end: real server and runner processes, both backends."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.service.cluster import cluster, jobs_of, wait_run

WORKFLOW = """
    on:
      workflow_dispatch:
        inputs:
          seconds:
            type: number
    concurrency:
      group: Deploy-${{{{ github.ref_name }}}}
      cancel-in-progress: {cancel}
    jobs:
      deploy:
        runs-on: ubuntu-latest
        steps:
          - run: sleep ${{{{ inputs.seconds }}}}
"""


def _dispatcher(api: httpx.Client, cancel: bool) -> Callable[[float], str]:
    source = textwrap.dedent(WORKFLOW.format(cancel=str(cancel).lower())).lstrip()
    created = api.post("/api/v1/workflows", json={"path": "deploy.yml", "source": source})
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]

    def dispatch(seconds: float) -> str:
        answer = api.post(
            f"/api/v1/workflows/{workflow_id}/dispatch", json={"inputs": {"seconds": seconds}}
        )
        assert answer.status_code == 202, answer.text
        return str(answer.json()["run_id"])

    return dispatch


def _wait_running(api: httpx.Client, run_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(j["status"] == "running" for j in jobs_of(api, run_id)):
            return
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not start")


def test_cancel_in_progress_cancels_the_running_run(
    tmp_path: Path, database_url: str | None
) -> None:
    with cluster(tmp_path, database_url) as (server, _), server.api() as api:
        dispatch = _dispatcher(api, cancel=True)
        first_id = dispatch(60)
        _wait_running(api, first_id)
        refused = api.post(f"/api/v1/runs/{first_id}/rerun-failed")
        assert refused.status_code == 409 and "has not ended" in refused.json()["message"]

        second_id = dispatch(0.1)
        first = wait_run(api, first_id, timeout=40)
        second = wait_run(api, second_id, timeout=40)
        assert first["conclusion"] == "cancelled"
        assert second["conclusion"] == "success"
        assert first["concurrency_group"] == second["concurrency_group"] == "deploy-main"
        (cancelled,) = jobs_of(api, first_id)
        assert "concurrency group 'deploy-main'" in cancelled["reason"]
        # The new run started only once the cancelled one had ended: deploys never overlap.
        (deployed,) = jobs_of(api, second_id)
        assert deployed["started_at"] >= first["completed_at"]


def test_a_newer_waiting_run_replaces_the_older_waiting_one(
    tmp_path: Path, database_url: str | None
) -> None:
    with cluster(tmp_path, database_url) as (server, _), server.api() as api:
        dispatch = _dispatcher(api, cancel=False)
        running_id = dispatch(3)
        _wait_running(api, running_id)
        replaced_id = dispatch(0.1)
        latest_id = dispatch(0.1)

        running = wait_run(api, running_id)
        replaced = wait_run(api, replaced_id)
        latest = wait_run(api, latest_id)
        assert running["conclusion"] == "success"  # not cancelled: in progress
        assert replaced["conclusion"] == "cancelled"
        assert replaced["started_at"] is None  # it never ran
        assert latest["conclusion"] == "success"
        (waited,) = jobs_of(api, latest_id)
        assert waited["started_at"] >= running["completed_at"]

"""Run-once steps on a retry: the poll answer carries what earlier leases of the attempt
recorded (`completed_steps`), on both backends, through the real RunService."""

from __future__ import annotations

import time
from typing import Any

from tests.api.conftest import Live

DEPLOY_YAML = """\
on: workflow_dispatch
jobs:
  deploy:
    runs-on: linux
    steps:
      - {id: migrate, run: ./migrate, run-once: true}
      - {id: seed, run: ./seed, run-once: true}
      - {id: build, run: ./build}
"""


def _poll(live: Live, token: str, **body: Any) -> dict[str, Any]:
    with live.client(token) as http:
        answer = http.post("/api/v1/runners/poll", json={"wait": 0, **body})
    job = answer.json()["job"]
    assert job is not None, answer.text
    return dict(job)


def _report(live: Live, token: str, job: dict[str, Any], *events: dict[str, Any]) -> None:
    with live.client(token) as http:
        answer = http.post(
            f"/api/v1/jobs/{job['job_id']}/report",
            json={"epoch": job["epoch"], "events": [{"type": "job_start"}, *events]},
        )
    assert answer.status_code == 200, answer.text


def _step(index: int, outcome: str, outputs: dict[str, str]) -> list[dict[str, Any]]:
    end = {"index": index, "outcome": outcome, "conclusion": outcome, "outputs": outputs}
    return [{"type": "step_start", "index": index}, {"type": "step_end", **end}]


def _expire(live: Live, job: dict[str, Any]) -> None:
    """The job's lease runs out and the reaper queues it again."""
    live.call(live.store.renew_lease(job["job_id"], job["epoch"], 0.001))
    time.sleep(0.05)
    assert [j.id for j in live.call(live.store.reap_expired(max_retries=3))] == [job["job_id"]]


def test_a_retry_is_handed_the_completions_of_its_run_once_steps(live: Live) -> None:
    live.dispatch(live.register_workflow(DEPLOY_YAML))
    _, token = live.register_runner(["linux"])
    first = _poll(live, token)
    assert first["completed_steps"] == []
    _report(
        live,
        token,
        first,
        *_step(0, "success", {"v": "7"}),
        *_step(1, "failure", {}),  # run-once, but failed: runs again
        *_step(2, "success", {"n": "1"}),  # succeeded, but not run-once: runs again
    )
    _expire(live, first)

    second = _poll(live, token, request="second")
    assert second["epoch"] == first["epoch"] + 1
    assert second["completed_steps"] == [{"index": 0, "epoch": 1, "outputs": {"v": "7"}}]
    # An answer handed again (the first was lost) carries them too.
    again = _poll(live, token, request="second", again=True)
    assert (again["epoch"], again["completed_steps"]) == (
        second["epoch"],
        second["completed_steps"],
    )

    restored = {"index": 0, "outcome": "success", "conclusion": "success", "restored": True}
    _report(live, token, second, {"type": "step_end", **restored, "outputs": {"v": "7"}})
    with live.client() as http:
        step = http.get(f"/api/v1/jobs/{second['job_id']}").json()["steps"][0]
    assert (step["status"], step["conclusion"], step["outputs"]) == (
        "skipped",
        "success",
        {"v": "7"},
    )
    _expire(live, second)

    # The restored row is a recorded completion in its turn.
    third = _poll(live, token)
    assert third["completed_steps"] == [{"index": 0, "epoch": 2, "outputs": {"v": "7"}}]


def test_a_new_attempt_is_handed_no_completion_of_the_previous_one(live: Live) -> None:
    run_id = live.dispatch(live.register_workflow(DEPLOY_YAML))
    _, token = live.register_runner(["linux"])
    first = _poll(live, token)
    end = {"type": "job_end", "conclusion": "failure"}
    _report(live, token, first, *_step(0, "success", {"v": "7"}), *_step(1, "failure", {}), end)
    with live.client() as http:
        answer = http.post(f"/api/v1/runs/{run_id}/rerun")
    assert answer.status_code == 202, answer.text

    rerun = _poll(live, token)
    assert rerun["run_id"] == answer.json()["run_id"] and rerun["completed_steps"] == []
    _expire(live, rerun)
    retried = _poll(live, token)
    assert (retried["job_id"], retried["completed_steps"]) == (rerun["job_id"], [])

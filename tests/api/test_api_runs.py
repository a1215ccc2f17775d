"""Runs and jobs through the API: filters, pages, cancel, re-run, job details."""

from __future__ import annotations

import pytest

from conveyor.engine.records import JobInstance, scheduler_work
from tests.api.conftest import MATRIX_YAML, Live


def test_runs_list_newest_first_in_pages(live: Live) -> None:
    workflow_id = live.register_workflow()
    ids = [live.dispatch(workflow_id) for _ in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    with live.client() as http:
        while True:
            params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = http.get("/api/v1/runs", params=params).json()
            seen += [run["id"] for run in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == list(reversed(ids))


def test_runs_filter_by_status_event_workflow_and_branch(live: Live) -> None:
    first = live.register_workflow()
    second = live.register_workflow(path=".github/workflows/other.yml")
    kept = live.dispatch(first)
    cancelled = live.dispatch(second)
    with live.client() as http:
        assert http.post(f"/api/v1/runs/{cancelled}/cancel").status_code == 202
        live.call(_conclude(live, cancelled))  # the scheduler's part

        def ids(**params: str) -> list[str]:
            answer = http.get("/api/v1/runs", params=params)
            assert answer.status_code == 200, answer.text
            return [run["id"] for run in answer.json()["items"]]

        assert ids(workflow_id=first) == [kept]
        assert ids(status="completed") == [cancelled]
        assert ids(status="queued") == [kept]
        assert sorted(ids(event="workflow_dispatch")) == sorted([kept, cancelled])
        assert ids(event="push") == []
        assert ids(branch="no-such-branch") == []
        bad = http.get("/api/v1/runs", params={"status": "exploded"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid"


def test_get_run_and_its_jobs(live: Live) -> None:
    run_id = live.dispatch(live.register_workflow())
    with live.client() as http:
        run = http.get(f"/api/v1/runs/{run_id}").json()
        jobs = http.get(f"/api/v1/runs/{run_id}/jobs").json()["items"]
        job = http.get(f"/api/v1/jobs/{jobs[1]['id']}").json()
        assert http.get("/api/v1/runs/nope").status_code == 404
        assert http.get("/api/v1/jobs/nope").status_code == 404
    assert run["workflow_name"] == "CI"
    assert run["attempt"] == 1 and run["run_number"] == 1
    assert [j["key"] for j in jobs] == ["build", "test"]
    assert [j["status"] for j in jobs] == ["queued", "pending"]  # the root at once
    assert jobs[1]["needs"] == ["build"]
    assert job["steps"] == [] and job["status"] == "pending"
    assert "spec" not in job and "secrets" not in job


def test_cancel_cancels_queued_jobs_and_leaves_the_scheduler_to_conclude(live: Live) -> None:
    run_id = live.dispatch(live.register_workflow())  # `build` is queued at once
    seen = live.call(live.store.events_after(0, limit=1000))[-1].id
    with live.client() as http:
        answer = http.post(f"/api/v1/runs/{run_id}/cancel")
        jobs = http.get(f"/api/v1/runs/{run_id}/jobs").json()["items"]
    assert answer.status_code == 202
    assert answer.json()["id"] == run_id
    assert {j["status"] for j in jobs} == {"cancelled"}
    events = live.call(live.store.events_after(seen))
    assert scheduler_work((e.kind, e.run_id, e.data) for e in events).advance == [run_id]


def test_cancel_of_a_completed_run_is_409(live: Live) -> None:
    run_id = live.dispatch(live.register_workflow())
    with live.client() as http:
        http.post(f"/api/v1/runs/{run_id}/cancel")
        live.call(_conclude(live, run_id))
        answer = http.post(f"/api/v1/runs/{run_id}/cancel")
    assert answer.status_code == 409 and answer.json()["code"] == "conflict"


async def _conclude(live: Live, run_id: str) -> None:
    from conveyor.engine.states import Conclusion

    await live.store.complete_run(run_id, Conclusion.CANCELLED)


def test_rerun_starts_a_new_attempt(live: Live) -> None:
    run_id = live.dispatch(live.register_workflow(), count=7)
    with live.client() as http:
        http.post(f"/api/v1/runs/{run_id}/cancel")
        live.call(_conclude(live, run_id))
        answer = http.post(f"/api/v1/runs/{run_id}/rerun")
        assert answer.status_code == 202, answer.text
        new = http.get(f"/api/v1/runs/{answer.json()['run_id']}").json()
    assert new["id"] != run_id
    assert new["attempt"] == 2
    assert new["inputs"] == {"count": 7, "debug": False}
    assert new["status"] == "queued"


ROOTS_YAML = """\
on: workflow_dispatch
jobs:
  build:
    name: build ${{ matrix.os }} (${{ github.run_number }})
    strategy:
      matrix:
        os: [linux, mac]
    runs-on: ${{ matrix.os }}
    steps:
      - run: echo build
  lint:
    runs-on: [linux, x64]
    steps:
      - run: echo lint
  test:
    needs: [build, lint]
    runs-on: linux
    steps:
      - run: echo test
"""


def test_dispatch_queues_the_root_jobs_as_the_scheduler_would(live: Live) -> None:
    run_id = live.dispatch(live.register_workflow(ROOTS_YAML))
    with live.client() as http:
        jobs = http.get(f"/api/v1/runs/{run_id}/jobs").json()["items"]
    assert [(j["key"], j["name"], j["status"], j["labels"], j["matrix"]) for j in jobs] == [
        ("build", "build linux (1)", "queued", ["linux"], {"os": "linux"}),
        ("build", "build mac (1)", "queued", ["mac"], {"os": "mac"}),
        ("lint", "lint", "queued", ["linux", "x64"], None),
        ("test", "test", "pending", [], None),  # labels come when it is queued
    ]


@pytest.mark.parametrize(
    "header, job",
    [
        ("", "    if: ${{ inputs.never }}\n"),  # a root that is skipped
        ("concurrency: deploy\n", ""),  # a run that may have to wait for its group
        ("", "    strategy:\n      matrix: ${{ fromJSON('[1]') }}\n"),  # a matrix that fails
    ],
)
def test_what_only_the_scheduler_decides_leaves_every_job_pending(
    live: Live, header: str, job: str
) -> None:
    source = (
        "on:\n  workflow_dispatch:\n    inputs:\n      never: {type: boolean}\n"
        + header
        + "jobs:\n  build:\n    runs-on: linux\n"
        + job
        + "    steps:\n      - run: echo build\n"
    )
    run_id = live.dispatch(live.register_workflow(source))
    with live.client() as http:
        jobs = http.get(f"/api/v1/runs/{run_id}/jobs").json()["items"]
    assert [j["status"] for j in jobs] == ["pending"]


def test_a_jobs_matrix_instances_are_listed_together_where_the_job_is(live: Live) -> None:
    run_id = live.dispatch(live.register_workflow(MATRIX_YAML))
    build = next(j for j in live.call(live.store.list_jobs(run_id)) if j.key == "build")
    instances = [JobInstance(f"build ({os})", {"os": os}) for os in "abc"]
    live.call(live.store.queue_job(build.id, instances))  # two rows made after report's
    with live.client() as http:
        jobs = http.get(f"/api/v1/runs/{run_id}/jobs").json()["items"]
    assert [j["name"] for j in jobs] == [
        "prepare",
        "build (a)",
        "build (b)",
        "build (c)",
        "report",
    ]

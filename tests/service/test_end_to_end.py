"""The service end to end: real servers, real runner processes, real HTTP, both backends."""

from __future__ import annotations

import json
from pathlib import Path

from tests.service.cluster import (
    cluster,
    head_sha,
    jobs_of,
    make_repo,
    push_webhook,
    wait_run,
)

PIPELINE = """
    on: push
    jobs:
      prepare:
        runs-on: ubuntu-latest
        outputs:
          version: ${{ steps.v.outputs.version }}
        steps:
          - id: v
            run: echo "version=7" >> "$GITHUB_OUTPUT"
      build:
        needs: prepare
        runs-on: ubuntu-latest
        strategy:
          matrix:
            os: [linux, mac]
            py: ["3.11", "3.12"]
        steps:
          - run: echo "build ${{ matrix.os }} ${{ matrix.py }} v${{ needs.prepare.outputs.version }}"
          # A runner takes one job at a time: two build jobs running at once are on two runners.
          - run: |
              touch "STARTED/${{ matrix.os }}-${{ matrix.py }}"
              for _ in $(seq 400); do
                [ "$(ls STARTED | wc -l)" -ge 2 ] && exit 0
                sleep 0.05
              done
              echo "no other build job ran alongside this one" >&2
              exit 1
      report:
        needs: build
        runs-on: ubuntu-latest
        steps:
          - uses: actions/checkout@v4
          - run: cat README.md
"""


def _register(api, name: str, path: Path) -> str:
    response = api.post("/api/v1/repositories", json={"name": name, "url": str(path)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_push_webhook_runs_a_matrix_dag_on_two_runners(tmp_path: Path, database_url) -> None:
    started = tmp_path / "started"
    started.mkdir()
    pipeline = PIPELINE.replace("STARTED", str(started))
    repo = make_repo(
        tmp_path / "repo", {"ci.yml": pipeline}, {"README.md": "hello from the repo\n"}
    )
    with cluster(tmp_path, database_url, runners=2) as (server, runners), server.api() as api:
        _register(api, "acme/app", repo)
        sha = head_sha(repo)
        response = push_webhook(server, "acme/app", sha, delivery="d-1")
        assert response.status_code == 202, response.text
        run_ids = response.json()["runs"]
        assert len(run_ids) == 1
        again = push_webhook(server, "acme/app", sha, delivery="d-1")
        assert again.json()["runs"] == run_ids  # a redelivery starts nothing new
        run = wait_run(api, run_ids[0])
        assert run["conclusion"] == "success", [r.log() for r in runners]
        jobs = jobs_of(api, run_ids[0])
        assert sorted(j["key"] for j in jobs) == ["build"] * 4 + ["prepare", "report"]
        assert all(j["conclusion"] == "success" for j in jobs)
        build = [j for j in jobs if j["key"] == "build"]
        # Both runner processes took jobs (each saved the id it registered under).
        ids = {json.loads((r.workdir / "runner.json").read_text())["runner_id"] for r in runners}
        assert len(ids) == 2
        assert {j["runner_id"] for j in build} == ids
        lines = []
        for job in build:
            log = api.get(f"/api/v1/jobs/{job['id']}/logs").json()
            lines += [line["text"] for line in log["lines"] if line["step"] is not None]
        assert sorted(lines) == sorted(
            f"build {os} {py} v7" for os in ("linux", "mac") for py in ("3.11", "3.12")
        )
        report = next(j for j in jobs if j["key"] == "report")
        text = api.get(f"/api/v1/jobs/{report['id']}/logs").json()["lines"]
        assert "hello from the repo" in [line["text"] for line in text]


def test_failure_skips_dependants(tmp_path: Path, database_url) -> None:
    wf = """
        on: [push, workflow_dispatch]
        jobs:
          broken:
            runs-on: ubuntu-latest
            steps:
              - run: exit 3
          after:
            needs: broken
            runs-on: ubuntu-latest
            steps:
              - run: echo never
          cleanup:
            needs: broken
            if: always()
            runs-on: ubuntu-latest
            steps:
              - run: echo "cleanup after ${{ needs.broken.result }}"
    """
    repo = make_repo(tmp_path / "repo", {"ci.yml": wf})
    with cluster(tmp_path, database_url) as (server, _), server.api() as api:
        repo_id = _register(api, "acme/fail", repo)
        created = api.post(
            "/api/v1/workflows", json={"repository_id": repo_id, "path": ".github/workflows/ci.yml"}
        )
        assert created.status_code == 201, created.text
        run_id = api.post(
            f"/api/v1/workflows/{created.json()['id']}/dispatch", json={"inputs": {}}
        ).json()["run_id"]
        run = wait_run(api, run_id)
        assert run["conclusion"] == "failure"
        by_key = {j["key"]: j for j in jobs_of(api, run_id)}
        assert by_key["broken"]["conclusion"] == "failure"
        assert by_key["after"]["conclusion"] == "skipped"
        assert by_key["cleanup"]["conclusion"] == "success"


def test_cancel_and_rerun(tmp_path: Path, database_url) -> None:
    wf = """
        on: workflow_dispatch
        jobs:
          slow:
            runs-on: ubuntu-latest
            steps:
              - run: sleep 60
              - if: always()
                run: echo "cleanup ran"
          later:
            needs: slow
            runs-on: ubuntu-latest
            steps:
              - run: echo later
    """
    repo = make_repo(tmp_path / "repo", {"slow.yml": wf})
    with cluster(tmp_path, database_url) as (server, _), server.api() as api:
        repo_id = _register(api, "acme/slow", repo)
        wf_id = api.post(
            "/api/v1/workflows",
            json={"repository_id": repo_id, "path": ".github/workflows/slow.yml"},
        ).json()["id"]
        run_id = api.post(f"/api/v1/workflows/{wf_id}/dispatch", json={"inputs": {}}).json()[
            "run_id"
        ]
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            jobs = jobs_of(api, run_id)
            if any(j["status"] == "running" for j in jobs):
                break
            time.sleep(0.1)
        assert api.post(f"/api/v1/runs/{run_id}/cancel").status_code in (200, 202)
        run = wait_run(api, run_id, timeout=40)
        assert run["conclusion"] == "cancelled"
        by_key = {j["key"]: j for j in jobs_of(api, run_id)}
        assert by_key["slow"]["conclusion"] == "cancelled"
        assert by_key["later"]["conclusion"] in ("cancelled", "skipped")
        log = api.get(f"/api/v1/jobs/{by_key['slow']['id']}/logs").json()["lines"]
        assert "cleanup ran" in [line["text"] for line in log]

        rerun = api.post(f"/api/v1/runs/{run_id}/rerun")
        assert rerun.status_code in (200, 201, 202), rerun.text
        new_id = rerun.json()["run_id"] if "run_id" in rerun.json() else rerun.json()["id"]
        assert new_id != run_id
        api.post(f"/api/v1/runs/{new_id}/cancel")
        assert wait_run(api, new_id, timeout=40)["attempt"] == 2

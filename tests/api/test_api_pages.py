"""The API's lists in cursor pages: every item once and in order, hostile cursors and limits
refused with 422, and no page ever shows another tenant's items."""

from __future__ import annotations

from typing import Any

import httpx

from conveyor.engine.records import JobInstance
from tests.api.conftest import (
    CI_YAML,
    MATRIX_YAML,
    OTHER_ADMIN,
    OTHER_REGISTRATION,
    Live,
    tar_bytes,
)

BAD_LIMITS = ("0", "-1", "201", "99999999999999999999", "abc", "")
# Raw query strings: a NUL, a lone surrogate's UTF-8, SQL, a cursor longer than any id.
BAD_CURSORS = ("nope", "%00", "%ED%A0%80", "%27%20OR%20%271%27%3D%271", "x" * 1025)


def walk(http: httpx.Client, path: str, limit: int, **params: str) -> tuple[list[Any], int]:
    """Every item of the list at `path`, following `next_cursor`; -> (items, pages)."""
    items: list[Any] = []
    cursor: str | None = None
    pages = 0
    while True:
        sent = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        answer = http.get(path, params=sent)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert set(page) == {"items", "next_cursor"}
        assert len(page["items"]) <= limit
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages
        assert page["items"] and pages < 100


def refused(answer: httpx.Response) -> bool:
    """A 422 in the project's error shape."""
    body = answer.json()
    return (
        answer.status_code == 422 and set(body) == {"code", "message"} and body["code"] == "invalid"
    )


def upload(live: Live, token: str, job: dict[str, Any], name: str) -> None:
    with live.client(token) as http:
        answer = http.put(
            f"/api/v1/jobs/{job['job_id']}/artifacts/{name}",
            params={"epoch": job["epoch"]},
            content=tar_bytes({name: b"x"}),
        )
    assert answer.status_code == 201, answer.text


def _workflow(http: httpx.Client, path: str, repository_id: str | None = None) -> str:
    body = {"path": path, "source": CI_YAML, "repository_id": repository_id}
    answer = http.post("/api/v1/workflows", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _dispatch(http: httpx.Client, workflow_id: str) -> str:
    answer = http.post(f"/api/v1/workflows/{workflow_id}/dispatch", json={"inputs": {}})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["run_id"])


def _repository(http: httpx.Client, name: str) -> str:
    answer = http.post("/api/v1/repositories", json={"name": name, "url": f"/srv/{name}"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_repositories_page_by_name_within_the_tenant(live: Live) -> None:
    names = ["acme/e", "acme/b", "acme/d", "acme/a", "acme/c"]
    with live.client() as http:
        ids = {_repository(http, name): name for name in names}
    with live.client(OTHER_ADMIN) as http:
        theirs = [_repository(http, "acme/b"), _repository(http, "other/x")]
        seen_by_them, _ = walk(http, "/api/v1/repositories", 1)
        mine_as_cursor = http.get("/api/v1/repositories", params={"cursor": next(iter(ids))})
    with live.client() as http:
        seen, pages = walk(http, "/api/v1/repositories", 2)
        whole = http.get("/api/v1/repositories").json()
        theirs_as_cursor = http.get("/api/v1/repositories", params={"cursor": theirs[0]})
    assert [r["name"] for r in seen] == sorted(names) and pages == 3
    assert {r["id"] for r in seen} == set(ids)
    assert whole == {"items": seen, "next_cursor": None}
    assert [r["id"] for r in seen_by_them] == theirs
    assert refused(mine_as_cursor) and refused(theirs_as_cursor)


def test_a_page_holds_50_items_unless_asked_for_another_limit(live: Live) -> None:
    for n in range(51):
        live.call(live.store.create_repository("default", f"acme/r{n:02}", "/srv"))
    with live.client() as http:
        first = http.get("/api/v1/repositories").json()
        rest = http.get("/api/v1/repositories", params={"cursor": first["next_cursor"]}).json()
        whole = http.get("/api/v1/repositories", params={"limit": 200}).json()
    assert len(first["items"]) == 50 and first["next_cursor"] == first["items"][-1]["id"]
    assert rest["next_cursor"] is None and first["items"] + rest["items"] == whole["items"]
    assert [r["name"] for r in whole["items"]] == [f"acme/r{n:02}" for n in range(51)]


def test_a_runs_jobs_page_in_the_workflows_order(live: Live) -> None:
    run_id = live.dispatch(live.register_workflow(MATRIX_YAML, ".github/workflows/matrix.yml"))
    other_run = live.dispatch(live.register_workflow())
    build = next(j for j in live.call(live.store.list_jobs(run_id)) if j.key == "build")
    instances = [JobInstance(f"build ({os})", {"os": os}) for os in "abc"]
    live.call(live.store.queue_job(build.id, instances))  # two rows made after report's
    path = f"/api/v1/runs/{run_id}/jobs"
    with live.client() as http:
        seen, pages = walk(http, path, 2)
        whole = http.get(path).json()
        other_job = http.get(f"/api/v1/runs/{other_run}/jobs").json()["items"][0]["id"]
        other_runs_job = http.get(path, params={"cursor": other_job})
    with live.client(OTHER_ADMIN) as http:
        walled = http.get(path, params={"cursor": seen[0]["id"]})
    names = ["prepare", "build (a)", "build (b)", "build (c)", "report"]
    assert [j["name"] for j in seen] == names and pages == 3
    assert whole == {"items": seen, "next_cursor": None}
    assert refused(other_runs_job)
    assert walled.status_code == 404 and walled.json()["code"] == "not_found"


def test_a_runs_artifacts_page_by_name_and_the_runner_still_gets_them_all(live: Live) -> None:
    token, job = live.leased_job()
    names = ["e", "b", "d", "a", "c"]
    for name in names:
        upload(live, token, job, name)
    path = f"/api/v1/runs/{job['run_id']}/artifacts"
    with live.client() as http:
        seen, pages = walk(http, path, 2)
        other_run = live.dispatch(live.register_workflow(path=".github/workflows/two.yml"))
        elsewhere = http.get(f"/api/v1/runs/{other_run}/artifacts", params={"cursor": "a"})
    with live.client(token) as http:
        runners = http.get(f"/api/v1/jobs/{job['job_id']}/artifacts", params={"limit": 1}).json()
    with live.client(OTHER_ADMIN) as http:
        walled = http.get(path, params={"cursor": "a"})
    assert [a["name"] for a in seen] == sorted(names) and pages == 3
    assert runners == {"artifacts": seen}  # not paged: runners read the list whole
    assert refused(elsewhere)
    assert walled.status_code == 404 and walled.json()["code"] == "not_found"


def test_workflows_filter_by_repository(live: Live) -> None:
    with live.client(OTHER_ADMIN) as http:
        foreign = _repository(http, "other/x")
        _workflow(http, ".github/workflows/theirs.yml", foreign)
    with live.client() as http:
        web, api = _repository(http, "acme/web"), _repository(http, "acme/api")
        on_web = [_workflow(http, f".github/workflows/w{n}.yml", web) for n in range(3)]
        _workflow(http, ".github/workflows/w0.yml", api)
        _workflow(http, ".github/workflows/plain.yml")
        seen, pages = walk(http, "/api/v1/workflows", 2, repository_id=web)
        foreigners = http.get("/api/v1/workflows", params={"repository_id": foreign}).json()
        unknown = http.get("/api/v1/workflows", params={"repository_id": "nope"}).json()
        every, _ = walk(http, "/api/v1/workflows", 2)
    assert [w["id"] for w in seen] == sorted(on_web) and pages == 2
    assert {w["repository_id"] for w in seen} == {web}
    assert foreigners == unknown == {"items": [], "next_cursor": None}
    assert len(every) == 5


def test_hostile_cursors_and_limits_are_refused_on_every_list(live: Live) -> None:
    token, job = live.leased_job()
    upload(live, token, job, "out")
    with live.client(OTHER_ADMIN) as http:
        their_run = _dispatch(http, _workflow(http, ".github/workflows/ci.yml"))
        their_repository = _repository(http, "other/x")
    _, their_token = live.register_runner(["linux"], OTHER_REGISTRATION)
    with live.client(their_token) as http:
        their_job = http.post("/api/v1/runners/poll", json={"wait": 0}).json()["job"]
    upload(live, their_token, their_job, "theirs")
    runs = f"/api/v1/runs/{job['run_id']}"
    theirs = {  # each list's cursor made of another tenant's item
        "/api/v1/runs": their_run,
        "/api/v1/repositories": their_repository,
        f"{runs}/jobs": their_job["job_id"],
        f"{runs}/artifacts": "theirs",
    }
    with live.client() as http:
        for path in [*theirs, "/api/v1/workflows"]:
            for limit in BAD_LIMITS:
                assert refused(http.get(path, params={"limit": limit})), (path, limit)
            assert http.get(path, params={"limit": "200"}).status_code == 200
        for path, cursor in theirs.items():
            for bad in BAD_CURSORS:
                assert refused(http.get(f"{path}?cursor={bad}")), (path, bad)
            assert refused(http.get(path, params={"cursor": cursor})), path
        # Workflows can be deleted: their cursor is compared, not looked up; its length is.
        assert refused(http.get("/api/v1/workflows", params={"cursor": "x" * 1025}))

"""Workflows and repositories through the API: register, validate, page, enable, dispatch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import BACKEND_INDEPENDENT, CI_YAML, Live, git_repository

BROKEN_YAML = """\
on: push
jobs:
  build:
    runs-on: linux
    steps:
      - run: echo ${{ github.event.nope(
"""


def test_register_validates_and_stores_the_source(live: Live) -> None:
    with live.client() as http:
        answer = http.post(
            "/api/v1/workflows", json={"path": ".github/workflows/ci.yml", "source": CI_YAML}
        )
        assert answer.status_code == 201
        created = answer.json()
        fetched = http.get(f"/api/v1/workflows/{created['id']}").json()
    assert created["name"] == "CI"
    assert created["enabled"] is True
    assert created["repository_id"] is None
    assert fetched == created
    assert fetched["source"] == CI_YAML


def test_an_invalid_workflow_is_422_with_positioned_diagnostics(live: Live) -> None:
    with live.client() as http:
        answer = http.post(
            "/api/v1/workflows", json={"path": ".github/workflows/bad.yml", "source": BROKEN_YAML}
        )
        listed = http.get("/api/v1/workflows").json()
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid"
    first = answer.json()["message"].splitlines()[0]
    assert first.startswith(".github/workflows/bad.yml:6:")
    assert listed["items"] == []


@BACKEND_INDEPENDENT
@pytest.mark.parametrize(
    "source",
    ["", "\x00\x01", "[1, 2", "- just\n- a list\n", "on: push\njobs: {}\n", "jöbs: ☃\n" * 3],
)
def test_hostile_workflow_sources_are_refused_cleanly(live: Live, source: str) -> None:
    with live.client() as http:
        answer = http.post("/api/v1/workflows", json={"path": "w.yml", "source": source})
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "invalid"
    assert answer.json()["message"]


@BACKEND_INDEPENDENT
@pytest.mark.parametrize(
    "path", ["/etc/passwd.yml", "../outside.yml", "a/../../b.yml", "ci.txt", "a\\b.yml"]
)
def test_workflow_paths_must_stay_inside_the_repository(live: Live, path: str) -> None:
    with live.client() as http:
        answer = http.post("/api/v1/workflows", json={"path": path, "source": CI_YAML})
    assert answer.status_code == 422
    assert "path" in answer.json()["message"]


def test_register_needs_a_source_or_a_repository(live: Live) -> None:
    with live.client() as http:
        answer = http.post("/api/v1/workflows", json={"path": "ci.yml"})
        unknown = http.post("/api/v1/workflows", json={"path": "ci.yml", "repository_id": "nope"})
    assert answer.status_code == 422
    assert unknown.status_code == 404


def test_register_reads_the_file_from_a_repository(live: Live, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    git_repository(repo, {".github/workflows/ci.yml": CI_YAML})
    with live.client() as http:
        created = http.post("/api/v1/repositories", json={"name": "acme/web", "url": str(repo)})
        assert created.status_code == 201
        repository_id = created.json()["id"]
        answer = http.post(
            "/api/v1/workflows",
            json={"repository_id": repository_id, "path": ".github/workflows/ci.yml"},
        )
        missing = http.post(
            "/api/v1/workflows",
            json={"repository_id": repository_id, "path": ".github/workflows/none.yml"},
        )
    assert answer.status_code == 201, answer.text
    assert answer.json()["source"] == CI_YAML
    assert answer.json()["repository_id"] == repository_id
    assert missing.status_code == 422


def test_repositories_register_list_get(live: Live) -> None:
    with live.client() as http:
        created = http.post(
            "/api/v1/repositories", json={"name": "acme/web", "url": "https://example.com/x.git"}
        ).json()
        assert http.get("/api/v1/repositories").json()["items"] == [created]
        assert http.get(f"/api/v1/repositories/{created['id']}").json() == created
        assert http.get("/api/v1/repositories/nope").status_code == 404
        for body in (
            {"name": "no-slash", "url": "/x"},
            {"name": "a/b/c", "url": "/x"},
            {"name": "acme/web", "url": ""},
            {"name": "acme/web", "url": "--upload-pack=evil"},
        ):
            assert http.post("/api/v1/repositories", json=body).status_code == 422, body


def test_list_pages_with_a_cursor(live: Live) -> None:
    ids = [live.register_workflow(path=f".github/workflows/w{i}.yml") for i in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    with live.client() as http:
        while True:
            params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = http.get("/api/v1/workflows", params=params).json()
            seen += [item["id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert http.get("/api/v1/workflows", params={"limit": 0}).status_code == 422
        assert http.get("/api/v1/workflows", params={"limit": 1000}).status_code == 422
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
    assert pages == 3


def test_enable_disable_and_delete(live: Live) -> None:
    workflow_id = live.register_workflow()
    base = f"/api/v1/workflows/{workflow_id}"
    with live.client() as http:
        assert http.post(f"{base}/disable").json()["enabled"] is False
        refused = http.post(f"{base}/dispatch", json={"inputs": {}})
        assert refused.status_code == 409 and refused.json()["code"] == "conflict"
        assert http.post(f"{base}/enable").json()["enabled"] is True
        assert http.patch(base, json={"enabled": False}).json()["enabled"] is False
        assert http.patch(base, json={"enabled": "yes please"}).status_code == 422
        assert http.delete(base).status_code == 204
        assert http.get(base).status_code == 404
        assert http.delete(base).status_code == 404


def test_dispatch_types_the_inputs(live: Live) -> None:
    workflow_id = live.register_workflow()
    with live.client() as http:
        answer = http.post(
            f"/api/v1/workflows/{workflow_id}/dispatch",
            json={"ref": "refs/heads/main", "inputs": {"count": "42", "debug": "TRUE"}},
        )
        assert answer.status_code == 202
        run = http.get(f"/api/v1/runs/{answer.json()['run_id']}").json()
    assert run["inputs"] == {"count": 42, "debug": True}
    assert run["event"] == "workflow_dispatch"
    assert run["workflow_id"] == workflow_id
    assert run["status"] == "queued"


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ({"count": "many"}, "input 'count'"),
        ({"colour": "red"}, "unknown input 'colour'"),
    ],
)
def test_dispatch_with_bad_inputs_is_422(live: Live, inputs: dict[str, str], problem: str) -> None:
    workflow_id = live.register_workflow()
    with live.client() as http:
        answer = http.post(f"/api/v1/workflows/{workflow_id}/dispatch", json={"inputs": inputs})
        runs = http.get("/api/v1/runs").json()["items"]
    assert answer.status_code == 422
    assert problem in answer.json()["message"]
    assert runs == []


def test_dispatch_needs_a_workflow_dispatch_trigger(live: Live) -> None:
    workflow_id = live.register_workflow(
        CI_YAML.replace("  workflow_dispatch:\n", "  workflow_call:\n")
    )
    with live.client() as http:
        answer = http.post(f"/api/v1/workflows/{workflow_id}/dispatch", json={"inputs": {}})
    assert answer.status_code == 422
    assert "workflow_dispatch" in answer.json()["message"]


def test_idempotency_key_replays_the_first_response(live: Live) -> None:
    workflow_id = live.register_workflow()
    path = f"/api/v1/workflows/{workflow_id}/dispatch"
    with live.client(headers={"Idempotency-Key": "retry-1"}) as http:
        first = http.post(path, json={"inputs": {"count": 1}})
        second = http.post(path, json={"inputs": {"count": 1}})
    with live.client(headers={"Idempotency-Key": "retry-2"}) as http:
        third = http.post(path, json={"inputs": {"count": 1}})
    with live.client() as http:
        runs = http.get("/api/v1/runs").json()["items"]
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert second.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert third.json()["run_id"] != first.json()["run_id"]
    assert len(runs) == 2


def test_idempotency_key_covers_registration_but_not_failures(live: Live) -> None:
    with live.client(headers={"Idempotency-Key": "reg-1"}) as http:
        bad = http.post("/api/v1/repositories", json={"name": "nope", "url": "/x"})
        good = http.post("/api/v1/repositories", json={"name": "acme/a", "url": "/x"})
        again = http.post("/api/v1/repositories", json={"name": "acme/a", "url": "/x"})
        listed = http.get("/api/v1/repositories").json()["items"]
    assert bad.status_code == 422
    assert good.status_code == again.status_code == 201
    assert good.json() == again.json()
    assert len(listed) == 1


@BACKEND_INDEPENDENT
def test_idempotency_keys_are_checked(live: Live) -> None:
    with live.client(headers={"Idempotency-Key": "x" * 300}) as http:
        answer = http.post("/api/v1/repositories", json={"name": "acme/a", "url": "/x"})
    assert answer.status_code == 422
    assert "Idempotency-Key" in answer.json()["message"]


def test_dispatch_sees_what_another_server_changed_in_the_workflow(live: Live) -> None:
    workflow_id = live.register_workflow()
    path = f"/api/v1/workflows/{workflow_id}/dispatch"
    record = live.call(live.store.get_workflow("default", workflow_id))
    with live.client() as http:
        assert http.post(path, json={"inputs": {}}).status_code == 202  # read, and kept

        # Changes made elsewhere, straight in the store: this server's copy is stale.
        live.call(live.store.set_workflow_enabled("default", workflow_id, False))
        answer = http.post(path, json={"inputs": {}})
        assert (answer.status_code, answer.json()["code"]) == (409, "conflict")
        live.call(live.store.set_workflow_enabled("default", workflow_id, True))
        assert http.post(path, json={"inputs": {}}).status_code == 202
        without = CI_YAML.replace("  workflow_dispatch:\n", "  workflow_call:\n")
        live.call(live.store.register_workflow("default", record.path, without, record.name))
        answer = http.post(path, json={"inputs": {}})
        assert answer.status_code == 422 and "workflow_dispatch" in answer.json()["message"]
        runs = http.get("/api/v1/runs").json()["items"]
    assert len(runs) == 2


def test_dispatch_takes_inputs_a_newer_version_of_the_workflow_declares(live: Live) -> None:
    workflow_id = live.register_workflow()
    path = f"/api/v1/workflows/{workflow_id}/dispatch"
    record = live.call(live.store.get_workflow("default", workflow_id))
    with live.client() as http:
        assert http.post(path, json={"inputs": {}}).status_code == 202  # read, and kept
        newer = CI_YAML.replace("    inputs:\n", "    inputs:\n      mode: {type: string}\n")
        assert newer != CI_YAML
        live.call(live.store.register_workflow("default", record.path, newer, record.name))
        answer = http.post(path, json={"inputs": {"mode": "fast"}})
    assert answer.status_code == 202, answer.text

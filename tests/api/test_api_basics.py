"""The API's frame: health, the OpenAPI document, authentication, tenants and error shapes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.conftest import ADMIN, BACKEND_INDEPENDENT, OTHER_ADMIN, REGISTRATION, Live


@BACKEND_INDEPENDENT
def test_healthz_answers_without_a_token(live: Live) -> None:
    with live.client(None) as http:
        answer = http.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_metrics_count_the_servers_write_transactions_without_a_token(live: Live) -> None:
    def writes() -> int:
        with live.client(None) as http:
            answer = http.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        assert "# TYPE conveyor_store_write_transactions_total counter" in answer.text
        (line,) = [x for x in answer.text.splitlines() if not x.startswith("#")]
        name, value = line.split(" ")
        assert name == "conveyor_store_write_transactions_total"
        return int(value)

    before = writes()
    live.register_workflow()
    assert writes() > before
    after = writes()
    with live.client() as http:
        assert http.get("/api/v1/workflows").status_code == 200  # a read writes nothing
    assert writes() == after


@BACKEND_INDEPENDENT
def test_openapi_document_lists_every_resource(live: Live) -> None:
    with live.client(None) as http:
        document = http.get("/api/v1/openapi.json").json()
        docs = http.get("/api/v1/docs")
    paths = document["paths"]
    for path in (
        "/api/v1/workflows",
        "/api/v1/workflows/{workflow_id}/dispatch",
        "/api/v1/runs",
        "/api/v1/runs/{run_id}/rerun-failed",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/logs/stream",
        "/api/v1/runners/poll",
        "/api/v1/jobs/{job_id}/artifacts/{name}",
        "/api/v1/webhooks/github",
        "/api/v1/repositories",
    ):
        assert path in paths, path
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


@BACKEND_INDEPENDENT
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Bearer nope"}, "invalid token"),
        ({"Authorization": f"Basic {ADMIN}"}, "must be 'Bearer <token>'"),
        ({"Authorization": "Bearer"}, "must be 'Bearer <token>'"),
    ],
)
def test_missing_or_wrong_tokens_are_401(live: Live, headers: dict[str, str], message: str) -> None:
    with live.client(None, headers=headers) as http:
        answer = http.get("/api/v1/workflows")
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized"
    assert message in answer.json()["message"]
    assert answer.headers["www-authenticate"] == "Bearer"


def test_a_token_of_the_wrong_kind_is_403(live: Live) -> None:
    _, runner_token = live.register_runner(["linux"])
    with live.client(runner_token) as http:
        assert http.get("/api/v1/runs").status_code == 403
    with live.client(REGISTRATION) as http:
        answer = http.get("/api/v1/runs")
    assert answer.status_code == 403
    assert answer.json() == {
        "code": "forbidden",
        "message": "this endpoint needs a admin token, not a registration token",
    }
    with live.client(ADMIN) as http:
        answer = http.post("/api/v1/runners/poll", json={"wait": 0})
    assert answer.status_code == 403


def test_another_tenants_objects_are_not_found(live: Live) -> None:
    workflow_id = live.register_workflow()
    run_id = live.dispatch(workflow_id)
    job_id = live.call(live.store.list_jobs(run_id))[0].id
    with live.client(OTHER_ADMIN) as http:
        for path in (
            f"/api/v1/workflows/{workflow_id}",
            f"/api/v1/runs/{run_id}",
            f"/api/v1/runs/{run_id}/jobs",
            f"/api/v1/jobs/{job_id}",
            f"/api/v1/jobs/{job_id}/logs",
            f"/api/v1/jobs/{job_id}/logs.txt",
            f"/api/v1/runs/{run_id}/artifacts",
        ):
            answer = http.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["code"] == "not_found"
        for path in (
            f"/api/v1/workflows/{workflow_id}/dispatch",
            f"/api/v1/workflows/{workflow_id}/disable",
            f"/api/v1/runs/{run_id}/cancel",
            f"/api/v1/runs/{run_id}/rerun",
        ):
            answer = http.post(path, json={"inputs": {}})
            assert answer.status_code == 404, path
        assert http.delete(f"/api/v1/workflows/{workflow_id}").status_code == 404
        assert http.get("/api/v1/workflows").json()["items"] == []
        assert http.get("/api/v1/runs").json()["items"] == []
    # ...and nothing of the owner's changed.
    with live.client() as http:
        assert http.get(f"/api/v1/workflows/{workflow_id}").json()["enabled"] is True
        assert http.get(f"/api/v1/runs/{run_id}").json()["status"] == "queued"


@BACKEND_INDEPENDENT
def test_unknown_routes_and_methods_answer_json(live: Live) -> None:
    with live.client() as http:
        missing = http.get("/api/v1/nothing-here")
        wrong_method = http.put("/api/v1/runs")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"


@BACKEND_INDEPENDENT
def test_invalid_bodies_are_422_with_the_field_named(live: Live) -> None:
    with live.client() as http:
        not_json = http.post(
            "/api/v1/workflows", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        wrong_type = http.post("/api/v1/workflows", json={"path": 3})
        missing = http.post("/api/v1/repositories", json={"name": "acme/web"})
    assert not_json.status_code == 422
    assert not_json.json()["code"] == "invalid"
    assert "not valid JSON" in not_json.json()["message"]
    assert wrong_type.status_code == 422 and "body.path" in wrong_type.json()["message"]
    assert missing.status_code == 422 and "body.url: Field required" in missing.json()["message"]


@BACKEND_INDEPENDENT
def test_request_bodies_over_the_limit_are_413(live: Live) -> None:
    huge = "x" * (live.settings.max_request_bytes + 1)
    with live.client() as http:
        declared = http.post("/api/v1/workflows", json={"path": "a.yml", "source": huge})

        def chunks() -> Iterator[bytes]:
            yield b'{"path": "a.yml", "source": "'
            for _ in range(live.settings.max_request_bytes // 1024 + 1):
                yield b"x" * 1024
            yield b'"}'

        streamed = http.post(
            "/api/v1/workflows", content=chunks(), headers={"Content-Type": "application/json"}
        )
    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert answer.json()["code"] == "too_large"

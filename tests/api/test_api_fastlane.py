"""The fast lane: the report and the dispatch answered as FastAPI answers them, whatever is sent."""

from __future__ import annotations

import httpx
import pytest

from conveyor.engine.states import JobStatus
from tests.api.conftest import ADMIN, BACKEND_INDEPENDENT, Live

JSON = {"Content-Type": "application/json"}


def _report(
    live: Live, token: str | None, job_id: str, body: bytes, **headers: str
) -> httpx.Response:
    with live.client(token) as http:
        return http.post(f"/api/v1/jobs/{job_id}/report", content=body, headers={**JSON, **headers})


def test_token_problems_are_answered_as_on_every_other_call(live: Live) -> None:
    token, job = live.leased_job()
    body = b'{"epoch": %d, "events": [{"type": "job_start"}]}' % job["epoch"]
    missing = _report(live, None, job["job_id"], body)
    assert (missing.status_code, missing.json()["code"]) == (401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert _report(live, "nope", job["job_id"], body).json()["message"] == "invalid token"
    wrong_kind = _report(live, ADMIN, job["job_id"], body)
    assert (wrong_kind.status_code, wrong_kind.json()["code"]) == (403, "forbidden")
    with live.client(token) as http:
        answer = http.post(f"/api/v1/workflows/{live.register_workflow()}/dispatch", json={})
    assert (answer.status_code, answer.json()["code"]) == (403, "forbidden")
    assert live.call(live.store.get_job(job["job_id"])).status == JobStatus.ACQUIRED


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"\xff\xfe", "body is not valid JSON"),
        (b"[]", "body"),
        (b'{"epoch": -1, "events": [{"type": "job_start"}]}', "body.epoch"),
        (b'{"epoch": 1, "events": [{"type": "step_start", "index": 0, "at": NaN}]}', "body.events"),
    ],
)
def test_bodies_the_model_refuses_get_fastapis_422(live: Live, body: bytes, problem: str) -> None:
    token, job = live.leased_job()
    answer = _report(live, token, job["job_id"], body)
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid")
    assert problem in answer.json()["message"]
    assert live.call(live.store.get_job(job["job_id"])).status == JobStatus.ACQUIRED


def test_a_refusal_is_the_stores_own_answer(live: Live) -> None:
    token, job = live.leased_job()
    body = b'{"epoch": %d, "events": [{"type": "job_start"}]}' % (job["epoch"] + 5)
    answer = _report(
        live, token, job["job_id"], body, **{"Content-Type": "application/json; charset=utf-8"}
    )
    assert (answer.status_code, answer.json()["code"]) == (409, "lease_lost")


@BACKEND_INDEPENDENT
@pytest.mark.parametrize("job_id", ["..%2F..%2Fruns", "a%2Fb", "%00", "x" * 5000])
def test_hostile_job_ids_find_no_job(live: Live, job_id: str) -> None:
    token, _ = live.leased_job()
    answer = _report(live, token, job_id, b'{"epoch": 1, "events": [{"type": "job_start"}]}')
    assert answer.status_code in (404, 409), answer.text
    assert answer.json()["code"] in ("not_found", "lease_lost")


def test_a_dispatch_with_an_idempotency_key_is_replayed(live: Live) -> None:
    workflow = live.register_workflow(
        "on: workflow_dispatch\njobs:\n  build:\n    runs-on: linux\n    steps:\n      - run: 'true'\n"
    )
    with live.client(headers={"Idempotency-Key": "once"}) as http:
        first = http.post(f"/api/v1/workflows/{workflow}/dispatch", json={})
        again = http.post(f"/api/v1/workflows/{workflow}/dispatch", json={})
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"

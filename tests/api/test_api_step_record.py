"""`POST /jobs/{id}/steps/{index}/record`: a whole quick step in one request, lease-fenced."""

from __future__ import annotations

from typing import Any

import httpx

from conveyor.engine.states import JobStatus, StepStatus
from tests.api.conftest import Live


def _post(live: Live, token: str, path: str, body: dict[str, Any]) -> httpx.Response:
    with live.client(token) as http:
        return http.post(path, json=body)


def _record(epoch: int, **changes: Any) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "step_id": "hello",
        "name": "Say hello",
        "lines": [[0, "hello"], [None, "wörld\x00 ✓"]],
        "outcome": "success",
        "conclusion": "success",
        "outputs": {"greeting": "hi"},
        **changes,
    }


def test_a_step_is_recorded_with_its_lines_in_one_request(live: Live) -> None:
    token, job = live.leased_job()
    base, epoch = f"/api/v1/jobs/{job['job_id']}", job["epoch"]
    assert _post(live, token, f"{base}/start", {"epoch": epoch}).status_code == 200
    before = len(live.call(live.store.events_after(0, 100_000)))

    answer = _post(live, token, f"{base}/steps/0/record", _record(epoch))
    assert (answer.status_code, answer.json()) == (200, {"last_seq": 2})
    tolerated = _record(epoch, step_id=None, name="Lint", lines=[], outcome="failure")
    answer = _post(live, token, f"{base}/steps/1/record", tolerated)  # continue-on-error
    assert answer.json() == {"last_seq": 2}

    first, second = live.call(live.store.list_steps(job["job_id"]))
    assert (first.step_id, first.name, first.status, dict(first.outputs)) == (
        "hello",
        "Say hello",
        StepStatus.COMPLETED,
        {"greeting": "hi"},
    )
    assert (second.name, second.status, second.conclusion) == ("Lint", StepStatus.FAILED, "success")
    log = live.call(live.store.read_log(job["job_id"]))
    assert [(n.seq, n.step_index, n.text) for n in log] == [
        (1, 0, "hello"),
        (2, None, "wörld\ufffd ✓"),
    ]
    events = live.call(live.store.events_after(0, 100_000))[before:]
    assert [e.kind for e in events] == ["step.started", "step.completed"] * 2


def test_a_step_recorded_again_is_a_conflict(live: Live) -> None:
    token, job = live.leased_job()
    base, epoch = f"/api/v1/jobs/{job['job_id']}", job["epoch"]
    assert _post(live, token, f"{base}/steps/0/record", _record(epoch)).status_code == 200
    again = _post(live, token, f"{base}/steps/0/record", _record(epoch))
    assert (again.status_code, again.json()["code"]) == (409, "conflict")
    assert len(live.call(live.store.read_log(job["job_id"]))) == 2


def test_a_stale_epoch_records_nothing(live: Live) -> None:
    token, job = live.leased_job()
    base = f"/api/v1/jobs/{job['job_id']}"
    before = len(live.call(live.store.events_after(0, 100_000)))
    answer = _post(live, token, f"{base}/steps/0/record", _record(job["epoch"] - 1))
    assert (answer.status_code, answer.json()["code"]) == (409, "lease_lost")
    assert live.call(live.store.get_job(job["job_id"])).status == JobStatus.ACQUIRED
    assert live.call(live.store.list_steps(job["job_id"])) == []
    assert live.call(live.store.read_log(job["job_id"])) == []
    assert len(live.call(live.store.events_after(0, 100_000))) == before


def test_a_malformed_record_is_422(live: Live) -> None:
    token, job = live.leased_job()
    base, epoch = f"/api/v1/jobs/{job['job_id']}", job["epoch"]
    for body in (
        _record(epoch, outcome="maybe"),
        _record(epoch, lines=[["zero", "text"]]),
        {"epoch": epoch, "name": "no outcome"},
    ):
        answer = _post(live, token, f"{base}/steps/0/record", body)
        assert (answer.status_code, answer.json()["code"]) == (422, "invalid"), body
    assert live.call(live.store.list_steps(job["job_id"])) == []

"""The runner protocol over a real socket: register, long-poll, lease-fenced writes."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.api.deps import hash_token
from conveyor.engine.states import JobStatus
from tests.api.conftest import ADMIN, OTHER_REGISTRATION, Live


def _post(live: Live, token: str, path: str, body: dict[str, Any]) -> httpx.Response:
    with live.client(token) as http:
        return http.post(path, json=body)


def test_register_gives_a_runner_token_shown_once(live: Live) -> None:
    runner_id, token = live.register_runner(["linux", "x64"])
    record = live.call(live.store.get_runner(runner_id))
    assert record.labels == ("linux", "x64")
    assert record.tenant_id == "default"
    assert len(token) >= 40
    # Only the hash is stored: the clear token appears nowhere in the database files.
    for path in Path(live.settings.data_dir).parent.glob("conveyor.db*"):
        assert token.encode() not in path.read_bytes()
    assert live.call(live.store.find_token(token)) is None
    assert live.call(live.store.find_token(hash_token(token))) is not None


def test_register_needs_a_registration_token(live: Live) -> None:
    body = {"name": "r", "labels": []}
    assert _post(live, ADMIN, "/api/v1/runners/register", body).status_code == 403
    assert _post(live, "", "/api/v1/runners/register", body).status_code == 401


def test_poll_returns_null_after_the_wait_when_nothing_is_queued(live: Live) -> None:
    _, token = live.register_runner(["linux"])
    started = time.monotonic()
    answer = _post(live, token, "/api/v1/runners/poll", {"wait": 0.3})
    elapsed = time.monotonic() - started
    assert answer.status_code == 200
    assert answer.json() == {"job": None}
    assert 0.25 <= elapsed < 2.0


def test_poll_wait_is_capped_by_the_server(live: Live) -> None:
    _, token = live.register_runner(["linux"])
    started = time.monotonic()
    answer = _post(live, token, "/api/v1/runners/poll", {"wait": 3600})
    assert answer.json() == {"job": None}
    assert time.monotonic() - started < live.settings.max_poll_wait + 1.5


def test_poll_returns_at_once_when_a_job_is_queued_during_the_wait(live: Live) -> None:
    workflow_id = live.register_workflow()
    _, token = live.register_runner(["linux"])
    result: dict[str, Any] = {}

    def poll() -> None:
        started = time.monotonic()
        result["answer"] = _post(live, token, "/api/v1/runners/poll", {"wait": 10})
        result["elapsed"] = time.monotonic() - started

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)
    run_id = live.dispatch(workflow_id)  # its root job is queued as the run is created
    poller.join(timeout=15)
    job = result["answer"].json()["job"]
    assert job is not None
    assert result["elapsed"] < 5
    assert job["run_id"] == run_id and job["key"] == "build"


def test_a_poll_asked_again_after_a_lost_answer_is_handed_the_same_job(live: Live) -> None:
    workflow_id = live.register_workflow()
    first_run, second_run = live.dispatch(workflow_id), live.dispatch(workflow_id)
    _, token = live.register_runner(["linux"])
    _, other = live.register_runner(["linux"])
    poll = "/api/v1/runners/poll"
    lost = _post(live, token, poll, {"wait": 0, "request": "n-1"}).json()["job"]
    assert lost["run_id"] == first_run
    # Another runner's poll of the same name takes the next job, not this one.
    taken = _post(live, other, poll, {"wait": 0, "request": "n-1", "again": True}).json()["job"]
    assert taken["run_id"] == second_run
    again = _post(live, token, poll, {"wait": 0, "request": "n-1", "again": True}).json()["job"]
    assert (again["job_id"], again["epoch"]) == (lost["job_id"], lost["epoch"])
    # A new poll, or one whose job the runner has started, is handed no job twice.
    assert _post(live, token, poll, {"wait": 0, "request": "n-2"}).json() == {"job": None}
    base = f"/api/v1/jobs/{lost['job_id']}"
    assert _post(live, token, f"{base}/start", {"epoch": lost["epoch"]}).status_code == 200
    answer = _post(live, token, poll, {"wait": 0, "request": "n-1", "again": True})
    assert answer.json() == {"job": None}


def test_a_polls_name_is_checked(live: Live) -> None:
    _, token = live.register_runner(["linux"])
    for hostile in ("", "../x", "a b", "nul\x00", "é", "x" * 65, 7, None):
        body = {"wait": 0, "request": hostile, "again": True}
        answer = _post(live, token, "/api/v1/runners/poll", body)
        if hostile is None:
            assert answer.json() == {"job": None}  # no name: an ordinary poll
        else:
            assert answer.status_code == 422, hostile
            assert answer.json()["code"] == "invalid"


def test_the_assignment_carries_what_the_runner_needs(live: Live) -> None:
    _token, job = live.leased_job()
    assert set(job) >= {
        "job_id",
        "epoch",
        "run_id",
        "key",
        "job",
        "name",
        "matrix",
        "workflow",
        "contexts",
        "secrets",
        "idempotency_base",
        "checkout",
        "lease_ttl",
        "heartbeat_interval",
    }
    assert job["epoch"] == 1
    assert job["lease_ttl"] == live.settings.lease_ttl
    assert job["heartbeat_interval"] == live.settings.heartbeat_interval
    assert "runs-on: linux" in job["workflow"]["source"]
    stored = live.call(live.store.get_job(job["job_id"]))
    assert stored.status == JobStatus.ACQUIRED
    assert stored.lease_epoch == job["epoch"]


def test_a_runner_gets_only_jobs_whose_labels_it_has(live: Live) -> None:
    live.dispatch(live.register_workflow())  # `build` runs on [linux]: queued at once
    _, windows = live.register_runner(["windows"])
    _, other_tenant = live.register_runner(["linux"], token=OTHER_REGISTRATION)
    assert _post(live, windows, "/api/v1/runners/poll", {"wait": 0}).json() == {"job": None}
    assert _post(live, other_tenant, "/api/v1/runners/poll", {"wait": 0}).json() == {"job": None}
    _, linux = live.register_runner(["linux", "x64"])
    assert _post(live, linux, "/api/v1/runners/poll", {"wait": 0}).json()["job"] is not None


def test_a_job_goes_through_its_lifecycle(live: Live) -> None:
    token, job = live.leased_job()
    base, epoch = f"/api/v1/jobs/{job['job_id']}", job["epoch"]
    assert _post(live, token, f"{base}/start", {"epoch": epoch}).json() == {}
    assert _post(live, token, f"{base}/heartbeat", {"epoch": epoch}).json() == {
        "cancel_requested": False,
        "lease_ttl": live.settings.lease_ttl,
    }
    step = {"epoch": epoch, "step_id": "hello", "name": "Say hello"}
    assert _post(live, token, f"{base}/steps/0/start", step).status_code == 200
    lines = {"epoch": epoch, "lines": [[0, "hello"], [0, "wörld ✓"], [None, "post"]]}
    assert _post(live, token, f"{base}/logs", lines).json() == {"last_seq": 3}
    finish = {
        **step,
        "outcome": "success",
        "conclusion": "success",
        "outputs": {"greeting": "hi"},
    }
    assert _post(live, token, f"{base}/steps/0/finish", finish).status_code == 200
    done = {"epoch": epoch, "conclusion": "success", "outputs": {"out": "1"}, "reason": None}
    assert _post(live, token, f"{base}/complete", done).json() == {}

    stored = live.call(live.store.get_job(job["job_id"]))
    assert stored.status == JobStatus.COMPLETED
    assert dict(stored.outputs) == {"out": "1"}
    (row,) = live.call(live.store.list_steps(job["job_id"]))
    assert (row.step_id, row.name, row.status, dict(row.outputs)) == (
        "hello",
        "Say hello",
        "completed",
        {"greeting": "hi"},
    )
    with live.client() as http:
        detail = http.get(base).json()
        log = http.get(f"{base}/logs").json()
    assert detail["status"] == "completed"
    assert detail["steps"][0]["outputs"] == {"greeting": "hi"}
    assert [line["text"] for line in log["lines"]] == ["hello", "wörld ✓", "post"]


def test_failed_and_cancelled_jobs_are_recorded_as_such(live: Live) -> None:
    token, job = live.leased_job()
    base = f"/api/v1/jobs/{job['job_id']}"
    _post(live, token, f"{base}/start", {"epoch": job["epoch"]})
    skipped = {
        "epoch": job["epoch"],
        "step_id": None,
        "name": "never",
        "outcome": "skipped",
        "conclusion": "skipped",
    }
    assert _post(live, token, f"{base}/steps/1/finish", skipped).status_code == 200
    failed = {"epoch": job["epoch"], "conclusion": "failure", "reason": "exit code 2"}
    assert _post(live, token, f"{base}/complete", failed).status_code == 200
    stored = live.call(live.store.get_job(job["job_id"]))
    assert (stored.status, stored.conclusion, stored.reason) == ("failed", "failure", "exit code 2")
    assert live.call(live.store.list_steps(job["job_id"]))[0].status == "skipped"


def test_heartbeat_reports_a_cancel_request(live: Live) -> None:
    token, job = live.leased_job()
    base = f"/api/v1/jobs/{job['job_id']}"
    _post(live, token, f"{base}/start", {"epoch": job["epoch"]})
    with live.client() as http:
        assert http.post(f"/api/v1/runs/{job['run_id']}/cancel").status_code == 202
    beat = _post(live, token, f"{base}/heartbeat", {"epoch": job["epoch"]})
    assert beat.json()["cancel_requested"] is True


@pytest.mark.settings(heartbeat_interval=20.0)
def test_a_held_heartbeat_answers_as_soon_as_its_jobs_cancel_is_asked_for(live: Live) -> None:
    token, job = live.leased_job()
    base = f"/api/v1/jobs/{job['job_id']}"
    _post(live, token, f"{base}/start", {"epoch": job["epoch"]})
    result: dict[str, Any] = {}

    def beat() -> None:
        started = time.monotonic()
        result["answer"] = _post(
            live, token, f"{base}/heartbeat", {"epoch": job["epoch"], "wait": 20}
        )
        result["elapsed"] = time.monotonic() - started

    holder = threading.Thread(target=beat)
    holder.start()
    time.sleep(0.5)
    assert holder.is_alive()  # held: nothing to say yet
    with live.client() as http:
        assert http.post(f"/api/v1/runs/{job['run_id']}/cancel").status_code == 202
    holder.join(timeout=15)
    assert result["answer"].json()["cancel_requested"] is True
    assert result["elapsed"] < 5


def test_a_held_heartbeat_renews_and_answers_after_its_wait_capped_by_the_server(
    live: Live,
) -> None:
    token, job = live.leased_job()
    base = f"/api/v1/jobs/{job['job_id']}"
    before = live.call(live.store.get_job(job["job_id"])).lease_expires_at
    for wait, low, high in ((0.3, 0.25, 2.0), (3600, 0.9, live.settings.heartbeat_interval + 2)):
        started = time.monotonic()
        answer = _post(live, token, f"{base}/heartbeat", {"epoch": job["epoch"], "wait": wait})
        assert answer.json() == {"cancel_requested": False, "lease_ttl": live.settings.lease_ttl}
        assert low <= time.monotonic() - started < high
    assert live.call(live.store.get_job(job["job_id"])).lease_expires_at > before
    for hostile in (-1, "soon", None, 1e308):
        answer = _post(live, token, f"{base}/heartbeat", {"epoch": job["epoch"], "wait": hostile})
        assert answer.status_code == 422, hostile


def test_stale_epoch_writes_are_refused_and_leave_no_trace(live: Live) -> None:
    token, job = live.leased_job()
    base, stale = f"/api/v1/jobs/{job['job_id']}", job["epoch"] - 1
    before_events = len(live.call(live.store.events_after(0, 100_000)))
    writes: list[tuple[str, dict[str, Any]]] = [
        ("start", {"epoch": stale}),
        ("heartbeat", {"epoch": stale}),
        ("steps/0/start", {"epoch": stale, "step_id": None, "name": "s"}),
        (
            "steps/0/finish",
            {"epoch": stale, "name": "s", "outcome": "success", "conclusion": "success"},
        ),
        ("logs", {"epoch": stale, "lines": [[0, "ghost line"]]}),
        ("complete", {"epoch": stale, "conclusion": "success"}),
    ]
    for path, body in writes:
        answer = _post(live, token, f"{base}/{path}", body)
        assert answer.status_code == 409, path
        assert answer.json()["code"] == "lease_lost", path
    stored = live.call(live.store.get_job(job["job_id"]))
    assert stored.status == JobStatus.ACQUIRED
    assert live.call(live.store.list_steps(job["job_id"])) == []
    assert live.call(live.store.read_log(job["job_id"])) == []
    assert len(live.call(live.store.events_after(0, 100_000))) == before_events


def test_another_runner_cannot_write_to_a_leased_job(live: Live) -> None:
    _, job = live.leased_job()
    _, intruder = live.register_runner(["linux"])
    answer = _post(live, intruder, f"/api/v1/jobs/{job['job_id']}/start", {"epoch": job["epoch"]})
    assert answer.status_code == 409
    assert answer.json()["code"] == "lease_lost"
    _, foreign = live.register_runner(["linux"], token=OTHER_REGISTRATION)
    answer = _post(live, foreign, f"/api/v1/jobs/{job['job_id']}/start", {"epoch": job["epoch"]})
    assert answer.status_code == 404
    assert live.call(live.store.get_job(job["job_id"])).status == JobStatus.ACQUIRED


def test_a_lease_taken_back_refuses_its_runners_writes(live: Live) -> None:
    """Also when the lease was handed out here and another server handed out the next."""
    token, job = live.leased_job()
    job_id, epoch = job["job_id"], job["epoch"]
    live.call(live.store.renew_lease(job_id, epoch, 0.001))
    time.sleep(0.05)
    assert [j.id for j in live.call(live.store.reap_expired(max_retries=3))] == [job_id]
    again = live.call(live.store.acquire_job("elsewhere", ["linux"], 60))
    assert again is not None and again.lease_epoch == epoch + 1
    for path in ("start", "heartbeat", "complete"):
        answer = _post(
            live, token, f"/api/v1/jobs/{job_id}/{path}", {"epoch": epoch, "conclusion": "success"}
        )
        assert answer.status_code == 409, path
        assert answer.json()["code"] == "lease_lost"
    stored = live.call(live.store.get_job(job_id))
    assert (stored.status, stored.lease_owner) == (JobStatus.ACQUIRED, "elsewhere")


def test_writes_after_completion_are_lease_lost(live: Live) -> None:
    token, job = live.leased_job(start=True)
    base, epoch = f"/api/v1/jobs/{job['job_id']}", job["epoch"]
    _post(live, token, f"{base}/complete", {"epoch": epoch, "conclusion": "success"})
    again = _post(live, token, f"{base}/complete", {"epoch": epoch, "conclusion": "failure"})
    assert again.status_code == 409 and again.json()["code"] == "lease_lost"
    assert live.call(live.store.get_job(job["job_id"])).conclusion == "success"


def test_malformed_runner_writes_are_422(live: Live) -> None:
    token, job = live.leased_job()
    base = f"/api/v1/jobs/{job['job_id']}"
    malformed: list[tuple[str, dict[str, Any]]] = [
        ("start", {}),
        ("start", {"epoch": "one"}),
        ("start", {"epoch": -1}),
        ("complete", {"epoch": 1, "conclusion": "maybe"}),
        ("logs", {"epoch": 1, "lines": "not a list"}),
        ("logs", {"epoch": 1, "lines": [[0]]}),
        ("steps/-1/start", {"epoch": 1, "name": "x"}),
        ("steps/x/start", {"epoch": 1, "name": "x"}),
    ]
    for path, body in malformed:
        answer = _post(live, token, f"{base}/{path}", body)
        assert answer.status_code == 422, (path, body, answer.text)
        assert answer.json()["code"] == "invalid"
    unknown = _post(live, token, "/api/v1/jobs/no-such-job/start", {"epoch": 1})
    assert unknown.status_code == 404


def test_log_lines_keep_unicode_and_replace_nul(live: Live) -> None:
    token, job = live.leased_job()
    base = f"/api/v1/jobs/{job['job_id']}"
    lines = [[0, "naïve ☃ 日本語"], [0, "nul\x00byte"], [0, ""], [0, "\t tab"]]
    answer = _post(live, token, f"{base}/logs", {"epoch": job["epoch"], "lines": lines})
    assert answer.json() == {"last_seq": 4}
    texts = [line.text for line in live.call(live.store.read_log(job["job_id"]))]
    assert texts == ["naïve ☃ 日本語", "nul\ufffdbyte", "", "\t tab"]

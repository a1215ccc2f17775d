"""`POST /jobs/{id}/report`: a batch of a job's events in one request, lease-fenced, all or nothing."""

from __future__ import annotations

from typing import Any

import httpx

from conveyor.engine.states import JobStatus, StepStatus
from tests.api.conftest import Live


def _post(live: Live, token: str, path: str, body: dict[str, Any]) -> httpx.Response:
    with live.client(token) as http:
        return http.post(path, json=body)


def _step(index: int, **changes: Any) -> list[dict[str, Any]]:
    end = {
        "type": "step_end",
        "index": index,
        "step_id": "hello",
        "name": "Say hello",
        "outcome": "success",
        "conclusion": "success",
        "outputs": {"greeting": "hi"},
        **changes,
    }
    start = {"type": "step_start", "index": index, "step_id": end["step_id"], "name": end["name"]}
    lines = {"type": "logs", "lines": [[index, "hello"], [None, "wörld\x00 ✓"]]}
    return [start, lines, end]


def _events(live: Live) -> list[Any]:
    return live.call(live.store.events_after(0, 100_000))


def test_a_whole_job_goes_in_one_report(live: Live) -> None:
    token, job = live.leased_job()
    base, epoch = f"/api/v1/jobs/{job['job_id']}", job["epoch"]
    before = len(_events(live))
    events = [
        {"type": "job_start"},
        *_step(0),
        *_step(1, step_id=None, name="Lint", outcome="failure"),  # continue-on-error
        {"type": "job_end", "conclusion": "success", "outputs": {"v": "1"}},
    ]
    answer = _post(live, token, f"{base}/report", {"epoch": epoch, "events": events})
    assert (answer.status_code, answer.json()) == (200, {"last_seq": 4, "job": None})

    first, second = live.call(live.store.list_steps(job["job_id"]))
    assert (first.step_id, first.name, first.status, dict(first.outputs)) == (
        "hello",
        "Say hello",
        StepStatus.COMPLETED,
        {"greeting": "hi"},
    )
    assert (second.name, second.status, second.conclusion) == ("Lint", StepStatus.FAILED, "success")
    log = live.call(live.store.read_log(job["job_id"]))
    assert [(n.seq, n.step_index, n.text) for n in log][:2] == [
        (1, 0, "hello"),
        (2, None, "wörld\ufffd ✓"),
    ]
    done = live.call(live.store.get_job(job["job_id"]))
    assert (done.status, dict(done.outputs)) == (JobStatus.COMPLETED, {"v": "1"})
    kinds = [e.kind for e in _events(live)[before:]]
    assert kinds[:2] == ["job.started", "run.started"]
    assert kinds[2:6] == ["step.started", "step.completed"] * 2
    assert kinds[6] == "job.completed"


def test_a_report_sent_again_is_a_conflict_and_adds_no_lines(live: Live) -> None:
    token, job = live.leased_job(start=True)
    base, epoch = f"/api/v1/jobs/{job['job_id']}", job["epoch"]
    body = {"epoch": epoch, "events": _step(0)}
    assert _post(live, token, f"{base}/report", body).status_code == 200
    again = _post(live, token, f"{base}/report", body)
    assert (again.status_code, again.json()["code"]) == (409, "conflict")
    assert len(live.call(live.store.read_log(job["job_id"]))) == 2


def test_a_stale_epoch_reports_nothing(live: Live) -> None:
    token, job = live.leased_job()
    base = f"/api/v1/jobs/{job['job_id']}"
    before = len(_events(live))
    events = [{"type": "job_start"}, *_step(0)]
    answer = _post(live, token, f"{base}/report", {"epoch": job["epoch"] - 1, "events": events})
    assert (answer.status_code, answer.json()["code"]) == (409, "lease_lost")
    assert live.call(live.store.get_job(job["job_id"])).status == JobStatus.ACQUIRED
    assert live.call(live.store.list_steps(job["job_id"])) == []
    assert live.call(live.store.read_log(job["job_id"])) == []
    assert len(_events(live)) == before


def test_a_job_that_failed_before_its_first_step_keeps_its_reason(live: Live) -> None:
    token, job = live.leased_job()
    base = f"/api/v1/jobs/{job['job_id']}"
    end = {"type": "job_end", "conclusion": "failure", "reason": "boom"}
    body = {"epoch": job["epoch"], "events": [{"type": "job_start"}, end]}
    assert _post(live, token, f"{base}/report", body).status_code == 200
    failed = live.call(live.store.get_job(job["job_id"]))
    assert (failed.status, failed.reason) == (JobStatus.FAILED, "boom")


def test_a_malformed_report_is_422_and_writes_nothing(live: Live) -> None:
    token, job = live.leased_job()
    base, epoch = f"/api/v1/jobs/{job['job_id']}", job["epoch"]
    for events in (
        [],
        [{"type": "explode"}],
        [{"no": "type"}],
        _step(0, outcome="maybe"),
        [{"type": "logs", "lines": [["zero", "text"]]}],
        [{"type": "step_start", "index": -1}],
        [{"type": "job_end", "conclusion": "skipped"}],
        [{"type": "job_start"}] * 10_001,
        "not a list",
    ):
        answer = _post(live, token, f"{base}/report", {"epoch": epoch, "events": events})
        assert (answer.status_code, answer.json()["code"]) == (422, "invalid"), events
    assert live.call(live.store.list_steps(job["job_id"])) == []
    assert live.call(live.store.get_job(job["job_id"])).status == JobStatus.ACQUIRED


def test_a_numbered_report_sent_again_is_answered_and_applied_once(live: Live) -> None:
    token, job = live.leased_job()
    base, epoch = f"/api/v1/jobs/{job['job_id']}", job["epoch"]
    body = {"epoch": epoch, "seq": 1, "events": [{"type": "job_start"}, *_step(0)]}
    first = _post(live, token, f"{base}/report", body)
    again = _post(live, token, f"{base}/report", body)
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json() == again.json() == {"last_seq": 2, "job": None}
    assert len(live.call(live.store.read_log(job["job_id"]))) == 2
    for seq in (0, -1, 2**31, "one"):
        answer = _post(live, token, f"{base}/report", {**body, "seq": seq})
        assert (answer.status_code, answer.json()["code"]) == (422, "invalid"), seq


def test_nothing_may_follow_the_job_end_and_times_must_be_numbers(live: Live) -> None:
    token, job = live.leased_job()
    base, epoch = f"/api/v1/jobs/{job['job_id']}", job["epoch"]
    after_end = [{"type": "job_end", "conclusion": "success"}, *_step(0)]
    answer = _post(live, token, f"{base}/report", {"epoch": epoch, "events": after_end})
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid")
    for value in (b"NaN", b"Infinity", b"-Infinity"):
        raw = b'{"epoch": %d, "events": [{"type": "step_start", "index": 0, "at": %s}]}' % (
            epoch,
            value,
        )
        with live.client(token) as http:
            answer = http.post(
                f"{base}/report", content=raw, headers={"Content-Type": "application/json"}
            )
        assert (answer.status_code, answer.json()["code"]) == (422, "invalid"), value
    assert live.call(live.store.list_steps(job["job_id"])) == []


def test_a_report_ending_the_job_can_take_the_runners_next_job(live: Live) -> None:
    token, job = live.leased_job()
    base, epoch = f"/api/v1/jobs/{job['job_id']}", job["epoch"]
    live.dispatch(live.register_workflow())  # its build job is queued for the runner
    ending = {"type": "job_end", "conclusion": "success", "outputs": {}}
    body = {"epoch": epoch, "seq": 1, "next": True, "events": [{"type": "job_start"}, ending]}

    answer = _post(live, token, f"{base}/report", body)

    assert answer.status_code == 200
    handed = answer.json()["job"]
    assert handed["job"] == "build" and handed["job_id"] != job["job_id"]
    leased = live.call(live.store.get_job(handed["job_id"]))
    assert (leased.status, leased.lease_epoch) == (JobStatus.ACQUIRED, handed["epoch"])
    first = live.call(live.store.get_job(job["job_id"]))
    assert leased.lease_owner == first.lease_owner  # the same runner
    # the handed job is the runner's as if polled: its writes are accepted
    started = _post(
        live, token, f"/api/v1/jobs/{handed['job_id']}/start", {"epoch": handed["epoch"]}
    )
    assert started.status_code == 200
    # nothing else queued: the next end's answer hands nothing
    done = {"epoch": handed["epoch"], "next": True, "events": [ending]}
    answer = _post(live, token, f"/api/v1/jobs/{handed['job_id']}/report", done)
    assert (answer.status_code, answer.json()["job"]) == (200, None)


def test_only_a_report_that_ends_the_job_asks_for_the_next(live: Live) -> None:
    token, job = live.leased_job()
    base, epoch = f"/api/v1/jobs/{job['job_id']}", job["epoch"]
    other = live.dispatch(live.register_workflow())
    for asked in (True, "yes", 1.5):
        body = {"epoch": epoch, "next": asked, "events": [{"type": "job_start"}]}
        answer = _post(live, token, f"{base}/report", body)
        assert (answer.status_code, answer.json()["code"]) == (422, "invalid"), asked
    assert live.call(live.store.get_job(job["job_id"])).status == JobStatus.ACQUIRED
    statuses = {j.key: j.status for j in live.call(live.store.list_jobs(other))}
    assert statuses["build"] == JobStatus.QUEUED  # not taken

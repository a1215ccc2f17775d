"""Artifacts over a real socket: tar upload under the lease, listing, download, refusals."""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.api.conftest import BACKEND_INDEPENDENT, OTHER_ADMIN, Live, tar_bytes


def upload(
    live: Live, token: str, job: dict[str, Any], name: str, body: bytes, epoch: int | None = None
) -> httpx.Response:
    with live.client(token) as http:
        return http.put(
            f"/api/v1/jobs/{job['job_id']}/artifacts/{quote(name, safe='/%')}",
            params={"epoch": job["epoch"] if epoch is None else epoch},
            content=body,
            headers={"Content-Type": "application/x-tar"},
        )


def files_under(root: str) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


def test_upload_list_and_download(live: Live) -> None:
    token, job = live.leased_job()
    body = tar_bytes({"dist/app.bin": b"\x00\x01binary", "README ☃.txt": "naïve".encode()})
    answer = upload(live, token, job, "build output", body)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"name": "build output", "size": len(body)}
    base = f"/api/v1/jobs/{job['job_id']}/artifacts"
    with live.client(token) as http:
        listed = http.get(base).json()
        downloaded = http.get(f"{base}/build output")
    with live.client() as http:
        by_run = http.get(f"/api/v1/runs/{job['run_id']}/artifacts").json()
        from_admin = http.get(f"/api/v1/runs/{job['run_id']}/artifacts/build output")
    assert listed == {"artifacts": [{"name": "build output", "size": len(body)}]}
    assert by_run == {"items": [{"name": "build output", "size": len(body)}], "next_cursor": None}
    assert downloaded.status_code == 200
    assert downloaded.headers["content-type"] == "application/x-tar"
    assert downloaded.content == body == from_admin.content
    with tarfile.open(fileobj=io.BytesIO(downloaded.content)) as archive:
        assert sorted(archive.getnames()) == ["README ☃.txt", "dist/app.bin"]
    stored = Path(live.settings.data_dir, "artifacts", job["run_id"])
    assert files_under(str(stored)) == [f"{job['job_id']}/{job['epoch']}/build output.tar"]


def test_a_name_is_uploaded_once(live: Live) -> None:
    token, job = live.leased_job()
    first = upload(live, token, job, "out", tar_bytes({"a": b"first"}))
    second = upload(live, token, job, "out", tar_bytes({"a": b"second"}))
    assert first.status_code == 201
    assert second.status_code == 409 and second.json()["code"] == "conflict"
    with live.client(token) as http:
        kept = http.get(f"/api/v1/jobs/{job['job_id']}/artifacts/out").content
    with tarfile.open(fileobj=io.BytesIO(kept)) as archive:
        member = archive.extractfile("a")
        assert member is not None and member.read() == b"first"


@BACKEND_INDEPENDENT
@pytest.mark.parametrize(
    ("members", "link", "problem"),
    [
        ({"../evil": b"x"}, None, "'..'"),
        ({"ok/../../evil": b"x"}, None, "'..'"),
        ({"/etc/evil": b"x"}, None, "absolute"),
        ({"C:/evil": b"x"}, None, "absolute"),
        ({}, ("link", "/etc/passwd"), "no links"),
        ({}, ("inner", "../../x"), "no links"),
    ],
)
def test_unsafe_tar_members_are_refused(
    live: Live, members: dict[str, bytes], link: tuple[str, str] | None, problem: str
) -> None:
    token, job = live.leased_job()
    answer = upload(live, token, job, "bad", tar_bytes(members, link=link))
    assert answer.status_code == 422, answer.text
    assert problem in answer.json()["message"]
    assert _nothing_stored(live, job)


@BACKEND_INDEPENDENT
def test_a_body_that_is_not_a_tar_is_refused(live: Live) -> None:
    token, job = live.leased_job()
    for body in (b"", b"plain text, not a tar", b"\x1f\x8b\x08\x00gzip-ish"):
        answer = upload(live, token, job, "bad", body)
        assert answer.status_code == 422, body
        assert answer.json()["code"] == "invalid"
    assert _nothing_stored(live, job)


@BACKEND_INDEPENDENT
def test_an_artifact_over_the_limit_is_413(live: Live) -> None:
    token, job = live.leased_job()
    big = tar_bytes({"big": os.urandom(live.settings.max_artifact_bytes)})
    declared = upload(live, token, job, "big", big)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    with live.client(token) as http:
        streamed = http.put(
            f"/api/v1/jobs/{job['job_id']}/artifacts/big",
            params={"epoch": job["epoch"]},
            content=chunks(),
        )
    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert answer.json()["code"] == "too_large"
    assert _nothing_stored(live, job)


@BACKEND_INDEPENDENT
@pytest.mark.parametrize("name", ["a:b", "a*b", "tab\there", " ", "x" * 300, "a\\b", "nul\x00"])
def test_bad_artifact_names_are_422(live: Live, name: str) -> None:
    token, job = live.leased_job()
    answer = upload(live, token, job, name, tar_bytes({"a": b"x"}))
    assert answer.status_code == 422, answer.text
    assert _nothing_stored(live, job)


@BACKEND_INDEPENDENT
def test_traversal_in_the_url_never_writes_outside(live: Live) -> None:
    token, job = live.leased_job()
    for name in ("../x", "..%2Fx", "a/../../x", "%2e%2e/x", "..", ".", "x/.."):
        answer = upload(live, token, job, name, tar_bytes({"a": b"x"}))
        assert answer.status_code in (404, 405, 422), (name, answer.status_code)
    data = Path(live.settings.data_dir)
    assert not any(p.name.startswith("x") for p in data.rglob("*"))
    assert _nothing_stored(live, job)


def test_stale_epoch_uploads_are_lease_lost(live: Live) -> None:
    token, job = live.leased_job(start=True)
    answer = upload(live, token, job, "late", tar_bytes({"a": b"x"}), epoch=job["epoch"] + 1)
    assert answer.status_code == 409 and answer.json()["code"] == "lease_lost"
    with live.client(token) as http:
        http.post(
            f"/api/v1/jobs/{job['job_id']}/complete",
            json={"epoch": job["epoch"], "conclusion": "success"},
        )
    after = upload(live, token, job, "after", tar_bytes({"a": b"x"}))
    assert after.status_code == 409 and after.json()["code"] == "lease_lost"
    assert _nothing_stored(live, job)


def test_a_retry_of_the_job_replaces_its_earlier_executions_artifact(live: Live) -> None:
    """The reaper took the job back from a lost runner; its retry uploads the name again."""
    lost_token, lost = live.leased_job()
    assert upload(live, lost_token, lost, "out", tar_bytes({"a": b"first"})).status_code == 201
    assert upload(live, lost_token, lost, "kept", tar_bytes({"k": b"k"})).status_code == 201
    token, job = _retried(live, lost)
    body = tar_bytes({"a": b"second, longer"})
    answer = upload(live, token, job, "out", body)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"name": "out", "size": len(body)}
    with live.client(token) as http:
        downloaded = http.get(f"/api/v1/jobs/{job['job_id']}/artifacts/out").content
    with live.client() as http:
        listed = http.get(f"/api/v1/runs/{job['run_id']}/artifacts").json()["items"]
    assert downloaded == body
    assert {"name": "out", "size": len(body)} in listed
    stored = os.path.join(live.settings.data_dir, "artifacts", job["run_id"])
    assert files_under(stored) == [
        f"{job['job_id']}/{lost['epoch']}/kept.tar",
        f"{job['job_id']}/{job['epoch']}/out.tar",
    ]
    late = upload(live, lost_token, lost, "out", tar_bytes({"a": b"late"}))
    assert late.status_code == 409 and late.json()["code"] == "lease_lost"
    again = upload(live, token, job, "out", tar_bytes({"a": b"again"}))
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    with live.client(token) as http:
        assert http.get(f"/api/v1/jobs/{job['job_id']}/artifacts/out").content == body
    assert len(files_under(stored)) == 2


def test_another_job_of_the_run_cannot_take_a_name(live: Live) -> None:
    live.dispatch(live.register_workflow(TWO_JOBS))
    (token, first), (other_token, other) = _poll(live), _poll(live)
    assert first["run_id"] == other["run_id"] and first["job_id"] != other["job_id"]
    assert upload(live, token, first, "out", tar_bytes({"a": b"first"})).status_code == 201
    taken = upload(live, other_token, other, "out", tar_bytes({"a": b"other"}))
    assert taken.status_code == 409 and taken.json()["code"] == "conflict"
    retry_token, retry = _retried(live, other)  # a later epoch of another job: still refused
    taken = upload(live, retry_token, retry, "out", tar_bytes({"a": b"other"}))
    assert taken.status_code == 409 and taken.json()["code"] == "conflict"
    with live.client(token) as http:
        kept = http.get(f"/api/v1/jobs/{first['job_id']}/artifacts/out").content
    assert kept == tar_bytes({"a": b"first"})
    stored = os.path.join(live.settings.data_dir, "artifacts", first["run_id"])
    assert files_under(stored) == [f"{first['job_id']}/{first['epoch']}/out.tar"]


def test_a_lease_lost_during_the_upload_refuses_it_and_leaves_nothing(live: Live) -> None:
    """The lease holds when the upload starts and is taken back before it is recorded."""
    token, job = live.leased_job()
    body = tar_bytes({"a": os.urandom(32 << 10)})

    def chunks() -> Iterator[bytes]:
        yield body[:8192]
        _take_back(live, job)
        again = live.call(live.store.acquire_job("elsewhere", ["linux"], 60))
        assert again is not None and again.lease_epoch == job["epoch"] + 1
        yield body[8192:]

    with live.client(token) as http:
        answer = http.put(
            f"/api/v1/jobs/{job['job_id']}/artifacts/out",
            params={"epoch": job["epoch"]},
            content=chunks(),
        )
    assert answer.status_code == 409 and answer.json()["code"] == "lease_lost", answer.text
    assert _nothing_stored(live, job)


def test_artifacts_are_tenant_walled(live: Live) -> None:
    token, job = live.leased_job()
    upload(live, token, job, "out", tar_bytes({"a": b"x"}))
    with live.client(OTHER_ADMIN) as http:
        assert http.get(f"/api/v1/jobs/{job['job_id']}/artifacts").status_code == 404
        assert http.get(f"/api/v1/jobs/{job['job_id']}/artifacts/out").status_code == 404
        assert http.get(f"/api/v1/runs/{job['run_id']}/artifacts/out").status_code == 404
    with live.client() as http:
        assert http.get(f"/api/v1/runs/{job['run_id']}/artifacts/missing").status_code == 404


def _nothing_stored(live: Live, job: dict[str, Any]) -> bool:
    listed = live.call(live.store.list_artifacts(job["run_id"]))
    directory = os.path.join(live.settings.data_dir, "artifacts", job["run_id"])
    leftovers = files_under(directory) if os.path.isdir(directory) else []
    return listed == [] and leftovers == []


TWO_JOBS = """\
on: workflow_dispatch
jobs:
  one:
    runs-on: linux
    steps:
      - run: echo one
  two:
    runs-on: linux
    steps:
      - run: echo two
"""


def _poll(live: Live) -> tuple[str, dict[str, Any]]:
    """A fresh runner's token and the job its poll was handed."""
    _, token = live.register_runner(["linux"])
    with live.client(token) as http:
        answer = http.post("/api/v1/runners/poll", json={"wait": 0})
    assignment = answer.json()["job"]
    assert assignment is not None, answer.text
    return token, assignment


def _take_back(live: Live, job: dict[str, Any]) -> None:
    """The job's lease runs out and the reaper re-queues it (as when its runner died)."""
    live.call(live.store.renew_lease(job["job_id"], job["epoch"], 0.001))
    time.sleep(0.05)
    assert [j.id for j in live.call(live.store.reap_expired(max_retries=3))] == [job["job_id"]]


def _retried(live: Live, job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The job taken back from its runner and handed to another, under the next epoch."""
    _take_back(live, job)
    token, again = _poll(live)
    assert (again["job_id"], again["epoch"]) == (job["job_id"], job["epoch"] + 1)
    return token, again

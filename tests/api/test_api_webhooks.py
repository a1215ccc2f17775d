"""GitHub webhooks over a real socket: signatures, event kinds, delivery dedupe, hostile bodies."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.api.routes import webhooks
from tests.api.conftest import BACKEND_INDEPENDENT, CI_YAML, WEBHOOK_SECRET, Live, git_repository

URL = "/api/v1/webhooks/github"


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(
    live: Live,
    body: bytes,
    *,
    event: str | None = "push",
    delivery: str | None = "d-1",
    signature: str | bytes | None = None,
) -> httpx.Response:
    sent = {"Content-Type": "application/json"}
    if event is not None:
        sent["X-GitHub-Event"] = event
    if delivery is not None:
        sent["X-GitHub-Delivery"] = delivery
    headers = [(name.encode(), value.encode()) for name, value in sent.items()]
    if signature is None:
        signature = sign(body)
    raw = signature.encode() if isinstance(signature, str) else signature
    headers.append((b"X-Hub-Signature-256", raw))
    with httpx.Client(base_url=live.url, timeout=30, verify=False) as http:
        return http.post(URL, content=body, headers=headers)


@pytest.fixture
def repo(live: Live, tmp_path: Path) -> str:
    """`acme/web` registered, with a push-triggered workflow; -> its head commit."""
    sha = git_repository(tmp_path / "web", {".github/workflows/ci.yml": CI_YAML})
    with live.client() as http:
        answer = http.post(
            "/api/v1/repositories", json={"name": "acme/web", "url": str(tmp_path / "web")}
        )
    assert answer.status_code == 201
    return sha


def push(sha: str, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": sha,
        "repository": {"full_name": "acme/web", "default_branch": "main"},
        "sender": {"login": "alice"},
        "commits": [],
    }
    payload.update(changes)
    return payload


def test_a_signed_push_starts_the_matching_workflows(live: Live, repo: str) -> None:
    answer = deliver(live, json.dumps(push(repo)).encode())
    assert answer.status_code == 202, answer.text
    (run_id,) = answer.json()["runs"]
    with live.client() as http:
        run = http.get(f"/api/v1/runs/{run_id}").json()
    assert run["event"] == "push"
    assert run["sha"] == repo
    assert run["ref"] == "refs/heads/main"


def test_the_same_delivery_twice_starts_one_run(live: Live, repo: str) -> None:
    body = json.dumps(push(repo)).encode()
    first = deliver(live, body, delivery="same")
    second = deliver(live, body, delivery="same")
    third = deliver(live, body, delivery="another")
    with live.client() as http:
        runs = http.get("/api/v1/runs").json()["items"]
    assert first.json()["runs"] == second.json()["runs"]
    assert third.json()["runs"] != first.json()["runs"]
    assert len(runs) == 2


@BACKEND_INDEPENDENT
@pytest.mark.parametrize(
    "signature",
    [
        "",
        "sha256=",
        "sha256=" + "0" * 64,
        "sha1=" + "0" * 40,
        sign(b"another body"),
        sign(b"{}", secret="wrong secret"),
        "sha256=☃".encode(),
    ],
)
def test_bad_signatures_are_401_and_start_nothing(
    live: Live, repo: str, signature: str | bytes
) -> None:
    answer = deliver(live, json.dumps(push(repo)).encode(), signature=signature)
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized"
    with live.client() as http:
        assert http.get("/api/v1/runs").json()["items"] == []


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", compare)
    body = b'{"zen": "x"}'
    assert webhooks.signature_matches("k", body, sign(body, "k"))
    assert not webhooks.signature_matches("k", body, sign(body, "other"))
    assert len(compared) == 2


def test_uppercase_hex_signatures_are_accepted() -> None:
    body = b"{}"
    assert webhooks.signature_matches(
        "k", body, sign(body, "k").upper().replace("SHA256=", "sha256=")
    )


@BACKEND_INDEPENDENT
@pytest.mark.settings(webhook_secret=None)
def test_without_a_configured_secret_every_webhook_is_refused(live: Live) -> None:
    answer = deliver(live, b"{}", signature="sha256=whatever")
    assert answer.status_code == 401
    assert "no webhook secret" in answer.json()["message"]


@BACKEND_INDEPENDENT
def test_ping_is_200_and_other_events_are_ignored(live: Live, repo: str) -> None:
    ping = deliver(live, b'{"zen": "Keep it logically awesome."}', event="ping")
    issues = deliver(live, json.dumps(push(repo)).encode(), event="issues")
    assert ping.status_code == 200
    assert issues.status_code == 202
    assert issues.json() == {"runs": [], "ignored": "issues"}


@BACKEND_INDEPENDENT
def test_event_and_delivery_headers_are_required(live: Live, repo: str) -> None:
    body = json.dumps(push(repo)).encode()
    no_event = deliver(live, body, event=None)
    no_delivery = deliver(live, body, delivery=None)
    long_delivery = deliver(live, body, delivery="d" * 500)
    for answer in (no_event, no_delivery, long_delivery):
        assert answer.status_code == 422
        assert answer.json()["code"] == "invalid"


def test_an_unknown_repository_is_404(live: Live, repo: str) -> None:
    payload = push(repo, repository={"full_name": "acme/unknown"})
    answer = deliver(live, json.dumps(payload).encode())
    assert answer.status_code == 404
    assert "acme/unknown" in answer.json()["message"]


@BACKEND_INDEPENDENT
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json at all", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2, 3]", "JSON object"),
        (b'"just a string"', "JSON object"),
        (b"{}", "repository.full_name"),
        (b'{"repository": "acme/web"}', "repository.full_name"),
        (b'{"repository": {"full_name": 7}}', "repository.full_name"),
        (b"[" * 100_000 + b"]" * 100_000, ""),
    ],
)
def test_hostile_bodies_get_clear_4xx(live: Live, repo: str, body: bytes, message: str) -> None:
    answer = deliver(live, body)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["code"] in ("invalid", "too_large")
    assert message in answer.json()["message"]


def test_payloads_missing_what_the_event_needs_are_422(live: Live, repo: str) -> None:
    no_ref = push(repo)
    del no_ref["ref"]
    answer = deliver(live, json.dumps(no_ref).encode())
    pull = deliver(
        live,
        json.dumps({"repository": {"full_name": "acme/web"}, "action": "opened"}).encode(),
        event="pull_request",
    )
    assert answer.status_code == 422 and "'ref'" in answer.json()["message"]
    assert pull.status_code == 422 and "pull_request.base.ref" in pull.json()["message"]


def test_unicode_and_nul_in_payloads_are_kept_safely(live: Live, repo: str) -> None:
    payload = push(repo, head_commit={"message": "fix ☃ \u0000 naïve 日本語", "id": repo})
    answer = deliver(live, json.dumps(payload).encode())
    assert answer.status_code == 202, answer.text
    with live.client() as http:
        run = http.get(f"/api/v1/runs/{answer.json()['runs'][0]}")
    assert run.status_code == 200


@BACKEND_INDEPENDENT
def test_a_body_over_the_limit_is_413(live: Live, repo: str) -> None:
    filler = "x" * live.settings.max_request_bytes
    answer = deliver(live, json.dumps(push(repo, filler=filler)).encode())
    assert answer.status_code == 413
    assert answer.json()["code"] == "too_large"

"""Real processes for end-to-end tests: `conveyor serve` servers and `conveyor runner` agents."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

WEBHOOK_SECRET = "test-webhook-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`conveyor serve` on a free port with short leases (SQLite when `database_url` is None)."""

    def __init__(
        self,
        data_dir: Path,
        database_url: str | None,
        *,
        lease_ttl: float = 3.0,
        heartbeat: float | None = None,
        reap_interval: float = 0.2,
        options: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.options = options
        """More `conveyor serve` options."""
        self.database_url = database_url
        self.lease_ttl = lease_ttl
        self.heartbeat = heartbeat if heartbeat is not None else lease_ttl / 6
        self.reap_interval = reap_interval
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        args = [
            sys.executable,
            "-m",
            "conveyor",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--lease-ttl",
            str(self.lease_ttl),
            "--heartbeat-interval",
            str(self.heartbeat),
            "--reap-interval",
            str(self.reap_interval),
            "--no-cron",
            *self.options,
        ]
        if self.database_url:
            args += ["--database-url", self.database_url]
        env = dict(os.environ, CONVEYOR_WEBHOOK_SECRET=WEBHOOK_SECRET)
        with open(self.data_dir.parent / f"server-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()}")
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log()}")

    def log(self) -> str:
        path = self.data_dir.parent / f"server-{self.port}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=20)

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    @property
    def runner_token(self) -> str:
        return (self.data_dir / "runner-token").read_text().strip()

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {self.admin_token}"}
        )


class Runner:
    def __init__(
        self, server: Server, workdir: Path, labels: str = "", *, concurrency: int = 1
    ) -> None:
        self.server = server
        self.workdir = workdir
        self.labels = labels
        self.concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Runner:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-m",
            "conveyor",
            "runner",
            "--url",
            self.server.url,
            "--token",
            self.server.runner_token,
            "--workdir",
            str(self.workdir),
            "--name",
            self.workdir.name,
        ]
        if self.labels:
            args += ["--labels", self.labels]
        if self.concurrency != 1:
            args += ["--concurrency", str(self.concurrency)]
        with open(self.workdir / "runner.log", "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)

    def log(self) -> str:
        path = self.workdir / "runner.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def make_repo(root: Path, workflows: dict[str, str], files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "-c", "init.defaultBranch=main", "init", "-q"], cwd=root, check=True)
    for name, text in workflows.items():
        path = root / ".github" / "workflows" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    commit(root)
    return root


def commit(root: Path) -> str:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "change", "--allow-empty"], cwd=root, check=True)
    return head_sha(root)


def head_sha(root: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


def push_webhook(
    server: Server,
    repo_name: str,
    sha: str,
    *,
    delivery: str | None = None,
    ref: str = "refs/heads/main",
) -> httpx.Response:
    payload = {
        "ref": ref,
        "after": sha,
        "repository": {"full_name": repo_name},
        "commits": [],
        "sender": {"login": "tester"},
    }
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return httpx.post(
        server.url + "/api/v1/webhooks/github",
        content=body,
        timeout=30,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": signature,
        },
    )


def wait_run(api: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.get(f"/api/v1/runs/{run_id}").json()
        if run.get("status") == "completed":
            return dict(run)
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not complete: {run}")


def jobs_of(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    data = api.get(f"/api/v1/runs/{run_id}/jobs").json()
    return list(data["items"] if isinstance(data, dict) else data)


@contextmanager
def cluster(
    tmp: Path, database_url: str | None, runners: int = 1, **kw: Any
) -> Iterator[tuple[Server, list[Runner]]]:
    server = Server(tmp / "data", database_url, **kw).start()
    started = [Runner(server, tmp / f"runner-{i}").start() for i in range(runners)]
    try:
        yield server, started
    finally:
        for r in started:
            r.stop()
        server.kill()

"""Real processes for the agent's end-to-end tests: a `conveyor serve`, agents, a repository."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from tests.service.cluster import Server

ROOT = Path(__file__).resolve().parents[2]
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]


class ServerProcess(Server):
    """`conveyor serve` on SQLite for the agent's tests (tests/service/cluster.py's server)."""

    def __init__(self, data_dir: Path, *, lease_ttl: float, heartbeat: float) -> None:
        super().__init__(
            data_dir, None, lease_ttl=lease_ttl, heartbeat=heartbeat, reap_interval=0.1
        )

    def stop(self) -> None:
        self.kill()

    @property
    def registration_token(self) -> str:
        return self.runner_token

    def api(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return httpx.Client(base_url=self.url + "/api/v1", timeout=30, headers=headers)


class AgentProcess:
    """One `run_agent` process (tests/runner_agent/agent_main.py), logging to a file."""

    def __init__(self, url: str, token: str, workdir: Path, *, grace: float = 60.0) -> None:
        self.url = url
        self.token = token
        self.workdir = workdir
        self.grace = grace
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            *(sys.executable, "-m", "tests.runner_agent.agent_main", self.url, self.token),
            *(str(self.workdir), self.workdir.name, "", str(self.grace)),
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
            )
        return self

    @property
    def log_path(self) -> Path:
        return self.workdir.parent / f"{self.workdir.name}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=20)


def make_repo(root: Path, workflows: dict[str, str], files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    for name, text in {
        **{f".github/workflows/{k}": v for k, v in workflows.items()},
        **files,
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).lstrip())
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "init"], cwd=root, check=True)
    return root


def dispatch(api: httpx.Client, repo: Path, name: str, workflow: str) -> str:
    """Register `repo` and its workflow `workflow` (a file name), dispatch it; -> run id."""
    response = api.post("/repositories", json={"name": name, "url": str(repo)})
    assert response.status_code == 201, response.text
    path = f".github/workflows/{workflow}"
    response = api.post("/workflows", json={"repository_id": response.json()["id"], "path": path})
    assert response.status_code == 201, response.text
    response = api.post(f"/workflows/{response.json()['id']}/dispatch", json={"inputs": {}})
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


def wait_run(api: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = api.get(f"/runs/{run_id}").json()
        if run.get("status") == "completed":
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not complete: {run}")


def jobs_of(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"/runs/{run_id}/jobs").json()["items"])


def log_texts(api: httpx.Client, job_id: str) -> list[str]:
    return [line["text"] for line in api.get(f"/jobs/{job_id}/logs").json()["lines"]]


def job_log(api: httpx.Client, run_id: str, key: str | None = None) -> list[str]:
    """The log lines of the run's job `key` (its only job when None)."""
    jobs = [j for j in jobs_of(api, run_id) if key is None or j["key"] == key]
    return log_texts(api, jobs[0]["id"]) if jobs else []

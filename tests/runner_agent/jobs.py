"""ASSIGNMENT documents as the server sends them, and process checks, for the agent's tests."""

from __future__ import annotations

import time
from typing import Any


def assignment(
    steps: str,
    *,
    job_id: str = "job-1",
    epoch: int = 1,
    lease_ttl: float = 10.0,
    heartbeat_interval: float = 0.1,
) -> dict[str, Any]:
    """An ASSIGNMENT for job `build` whose steps are the YAML list `steps` (indented 6)."""
    source = f"on: push\njobs:\n  build:\n    runs-on: linux\n    steps:\n{steps}"
    return {
        "job_id": job_id,
        "epoch": epoch,
        "run_id": "run-1",
        "key": "build",
        "job": "build",
        "name": "build",
        "matrix": None,
        "workflow": {"path": ".github/workflows/ci.yml", "source": source},
        "contexts": {
            "github": {"repository": "acme/widget", "event_name": "push"},
            "inputs": {},
            "vars": {},
            "needs": {},
            "strategy": {},
        },
        "secrets": {"TOKEN": "hunter2"},
        "idempotency_base": "default:run-1:1:build:null",
        "checkout": None,
        "lease_ttl": lease_ttl,
        "heartbeat_interval": heartbeat_interval,
    }


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None

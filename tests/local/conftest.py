"""Fixtures for end-to-end `conveyor run` tests: a real git repository, a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Result:
    status: int
    out: str
    err: str
    report: dict[str, Any] | None

    def job(self, job_id: str) -> list[dict[str, Any]]:
        assert self.report is not None, self.err
        return [j for j in self.report["jobs"] if j["id"] == job_id]

    def lines(self, job_id: str) -> list[str]:
        return [line for j in self.job(job_id) for s in j["steps"] for line in s["log"]]


class Repo:
    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def workflow(self, text: str, name: str = "wf.yml") -> str:
        self.write(f".github/workflows/{name}", text)
        return f".github/workflows/{name}"

    def commit(self) -> None:
        env = dict(
            os.environ,
            GIT_AUTHOR_NAME="t",
            GIT_AUTHOR_EMAIL="t@example.invalid",
            GIT_COMMITTER_NAME="t",
            GIT_COMMITTER_EMAIL="t@example.invalid",
        )
        subprocess.run(["git", "add", "-A"], cwd=self.root, check=True, env=env)
        subprocess.run(
            ["git", "commit", "-qm", "x", "--allow-empty"], cwd=self.root, check=True, env=env
        )

    def command(self, workflow: str, *args: str) -> list[str]:
        report = str(self.root.parent / "report.json")
        return [
            sys.executable,
            "-m",
            "conveyor",
            "run",
            "--workflow",
            workflow,
            "--report",
            report,
            *args,
        ]

    def run(self, workflow: str, *args: str, timeout: float = 60) -> Result:
        report = self.root.parent / "report.json"
        report.unlink(missing_ok=True)
        self.commit()
        proc = subprocess.run(
            self.command(workflow, *args),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        data = json.loads(report.read_text()) if report.exists() else None
        return Result(proc.returncode, proc.stdout, proc.stderr, data)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "-c", "init.defaultBranch=main", "init", "-q"], cwd=root, check=True)
    return Repo(root)

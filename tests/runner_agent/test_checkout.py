"""Server-mode checkout with a real `git` against a real repository on disk."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from conveyor.errors import ExecutionError
from conveyor.runner.assignment import JobAssignment, StepReport
from conveyor.runner.checkout import fetch_commit
from conveyor.runner.executor import JobExecutor
from conveyor.runner.workspace import Slots
from conveyor.workflow import load_workflow

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}
# Protocol v0 without allowAnySHA1InWant: the server sends only what its refs advertise.
OLD_SERVER = {
    **GIT_ENV,
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "protocol.version",
    "GIT_CONFIG_VALUE_0": "0",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, list[str]]:
    """A repository with two commits on main; -> (path, [first sha, second sha])."""
    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "-q", "-b", "main")
    shas = []
    for text in ("one", "two"):
        (src / "a.txt").write_text(text)
        git(src, "add", "a.txt")
        git(src, "commit", "-q", "-m", text)
        shas.append(git(src, "rev-parse", "HEAD"))
    return src, shas


def fetch(url: str, sha: str, dest: Path, **options: object) -> list[str]:
    lines: list[str] = []
    asyncio.run(fetch_commit(url, sha, str(dest), on_line=lines.append, **options))
    return lines


def test_a_commit_that_is_no_branch_tip_is_checked_out_detached(
    repo: tuple[Path, list[str]], tmp_path: Path
) -> None:
    src, (first, _) = repo
    dest = tmp_path / "ws"
    fetch(str(src), first, dest, env=GIT_ENV)
    assert (dest / "a.txt").read_text() == "one"
    assert git(dest, "rev-parse", "HEAD") == first
    assert git(dest, "rev-parse", "--is-shallow-repository") == "true"
    assert git(dest, "remote", "get-url", "origin") == str(src)
    with pytest.raises(subprocess.CalledProcessError):
        git(dest, "symbolic-ref", "-q", "HEAD")  # detached


def test_a_server_that_refuses_ids_gets_a_full_fetch(
    repo: tuple[Path, list[str]], tmp_path: Path
) -> None:
    src, (first, _) = repo
    dest = tmp_path / "ws"
    lines = fetch(str(src), first, dest, env=OLD_SERVER)
    assert any("does not send commits by id" in line for line in lines)
    assert git(dest, "rev-parse", "HEAD") == first
    assert (dest / "a.txt").read_text() == "one"


def test_fetch_depth_0_brings_the_whole_history(
    repo: tuple[Path, list[str]], tmp_path: Path
) -> None:
    src, (_, second) = repo
    dest = tmp_path / "ws"
    fetch(str(src), second, dest, env=GIT_ENV, depth=0)
    assert git(dest, "rev-list", "--count", "HEAD") == "2"


@pytest.mark.parametrize(
    ("url", "sha", "message"),
    [
        ("repo", "--upload-pack=touch /tmp/pwned", "not a full commit id"),
        ("repo", "abc123", "not a full commit id"),
        ("--upload-pack=touch /tmp/pwned", "a" * 40, "not a repository URL"),
    ],
)
def test_arguments_that_could_pass_for_options_are_refused(
    tmp_path: Path, url: str, sha: str, message: str
) -> None:
    with pytest.raises(ExecutionError, match=message):
        fetch(url, sha, tmp_path / "ws")


def test_an_unknown_commit_fails_clearly(repo: tuple[Path, list[str]], tmp_path: Path) -> None:
    src, _ = repo
    with pytest.raises(ExecutionError, match="checkout: `git checkout` failed"):
        fetch(str(src), "0" * 40, tmp_path / "ws", env=GIT_ENV)


class Recorder:
    """A JobReporter that keeps what it is told."""

    def __init__(self) -> None:
        self.cancel = asyncio.Event()
        self.lines: list[str] = []
        self.steps: list[StepReport] = []

    async def step_started(self, index: int, step_id: str | None, name: str) -> None:
        pass

    async def step_finished(self, report: StepReport) -> None:
        self.steps.append(report)

    def log(self, step_index: int | None, line: str) -> None:
        self.lines.append(line)

    async def flush(self) -> None:
        pass


WORKFLOW = """
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: test -z "$(ls -A)" && echo "empty at first"
      - uses: actions/checkout@v4
        id: co
      - run: cat a.txt; echo " at ${{ steps.co.outputs.commit }}"; basename "$GITHUB_WORKSPACE"
"""


def test_the_checkout_action_fetches_the_assigned_commit_into_an_empty_workspace(
    repo: tuple[Path, list[str]], tmp_path: Path
) -> None:
    src, (first, _) = repo
    workflow = load_workflow("ci.yml", text=WORKFLOW)
    assignment = JobAssignment(
        job_id="j",
        epoch=1,
        key="build",
        name="build",
        workflow=workflow,
        job=workflow.jobs["build"],
        source_dir=None,
        contexts={"github": {"repository": "acme/widget"}},
        checkout={"url": str(src), "sha": first, "ref": "refs/heads/main"},
    )
    reporter = Recorder()
    outcome = asyncio.run(
        JobExecutor(slots=Slots(str(tmp_path)), base_env=GIT_ENV).run(assignment, reporter)
    )
    assert outcome.conclusion == "success", reporter.lines
    assert "empty at first" in reporter.lines
    assert f"one at {first}" in reporter.lines
    assert "widget" in reporter.lines
    assert reporter.steps[1].outputs == {"ref": "refs/heads/main", "commit": first}

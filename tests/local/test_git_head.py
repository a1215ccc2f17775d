"""The checkout's commit and branch, read from .git as `git rev-parse` would answer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conveyor.local.run import _git_head

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_SYSTEM": "/dev/null",
    "PATH": "/usr/bin:/bin",
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, env=GIT_ENV, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "feature/x")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-q", "-m", "one")
    return repo


def test_a_branch_with_a_loose_ref(repo: Path) -> None:
    assert _git_head(str(repo)) == (git(repo, "rev-parse", "HEAD"), "feature/x")


def test_a_branch_whose_ref_is_packed(repo: Path) -> None:
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "feature" / "x").exists()
    assert _git_head(str(repo)) == (git(repo, "rev-parse", "HEAD"), "feature/x")


def test_a_detached_head_has_no_branch(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    assert _git_head(str(repo)) == (git(repo, "rev-parse", "HEAD"), "")


def test_a_worktree_is_answered_by_git(repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    git(repo, "worktree", "add", "-q", "-b", "side", str(other))
    assert (other / ".git").is_file()
    assert _git_head(str(other)) == (git(other, "rev-parse", "HEAD"), "side")


def test_no_commit_yet_and_no_git_at_all_are_empty(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q")
    assert _git_head(str(fresh)) == ("", "")
    plain = tmp_path / "plain"
    plain.mkdir()
    assert _git_head(str(plain)) == ("", "")

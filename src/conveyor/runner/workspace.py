"""The directories one job runs in: a fresh workspace and its private temp area."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobDirs:
    """`workspace` is GITHUB_WORKSPACE; `temp` is RUNNER_TEMP; `files` holds env files."""

    root: Path
    workspace: Path
    temp: Path
    files: Path
    tool_cache: Path
    owned_workspace: bool

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def prepare(source_dir: str | None, parent: str | None, *, bind: bool, name: str = "") -> JobDirs:
    """A fresh directory tree for one job; the workspace is a copy of `source_dir`.

    The copy keeps jobs from seeing each other's files (only artifacts and
    outputs cross between jobs). With `bind`, the job runs in `source_dir`.
    Without a `source_dir` the workspace starts empty, named after the
    repository `name` ("owner/repo") as GitHub's runner names it.
    """
    root = Path(tempfile.mkdtemp(prefix="job-", dir=parent))
    temp, files, tool_cache = root / "temp", root / "files", root / "tool-cache"
    for d in (temp, files, tool_cache):
        d.mkdir()
    if source_dir is None:
        base = name.rsplit("/", 1)[-1]
        workspace = root / "workspace" / (base if base not in ("", ".", "..") else "workspace")
        workspace.mkdir(parents=True)
    elif bind:
        workspace = Path(source_dir)
    else:
        workspace = root / "workspace" / Path(source_dir).name
        copy_checkout(source_dir, str(workspace))
    return JobDirs(
        root, workspace, temp, files, tool_cache, owned_workspace=not bind or source_dir is None
    )


def copy_checkout(source: str, dest: str) -> None:
    """Copy a working tree, uncommitted changes included, sharing its git objects.

    The copy's `.git` borrows the source's object database through
    `objects/info/alternates` (as `git clone --shared` does) instead of copying
    it: thousands of object files would dominate a job's start-up. Commits made
    in the copy go to its own object store; the source is never written.
    """
    shutil.copytree(
        source, dest, symlinks=True, ignore=lambda d, names: [".git"] if d == source else []
    )
    git = os.path.join(source, ".git")
    if os.path.isdir(git):
        _share_git(git, os.path.join(dest, ".git"))
    elif os.path.isfile(git):
        shutil.copy2(git, os.path.join(dest, ".git"))


def _share_git(source: str, dest: str) -> None:
    os.makedirs(os.path.join(dest, "objects", "info"))
    with open(os.path.join(dest, "objects", "info", "alternates"), "w") as f:
        f.write(os.path.abspath(os.path.join(source, "objects")) + "\n")
    for name in ("HEAD", "config", "index", "packed-refs", "shallow", "description"):
        path = os.path.join(source, name)
        if os.path.isfile(path):
            shutil.copy2(path, os.path.join(dest, name))
    refs = os.path.join(source, "refs")
    if os.path.isdir(refs):
        shutil.copytree(refs, os.path.join(dest, "refs"), symlinks=True)
    else:
        os.makedirs(os.path.join(dest, "refs"))


STEP_FILES = ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_STEP_SUMMARY", "GITHUB_STATE")


def step_files(dirs: JobDirs) -> dict[str, str]:
    """The environment files for the next step, each empty.

    GitHub gives every step fresh files; emptying the job's own set gives the
    same view without creating five files a step (file creation costs ~0.2 ms
    each on some filesystems, truncation ~0.01 ms).
    """
    files = {name: os.path.join(dirs.files, name.lower()) for name in STEP_FILES}
    for path in files.values():
        with open(path, "wb"):
            pass
    return files

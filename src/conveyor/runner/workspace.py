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


def prepare(source_dir: str, parent: str | None, *, bind: bool) -> JobDirs:
    """A fresh directory tree for one job; the workspace is a copy of `source_dir`.

    The copy keeps jobs from seeing each other's files (only artifacts and
    outputs cross between jobs). With `bind`, the job runs in `source_dir`.
    """
    root = Path(tempfile.mkdtemp(prefix="job-", dir=parent))
    temp, files, tool_cache = root / "temp", root / "files", root / "tool-cache"
    for d in (temp, files, tool_cache):
        d.mkdir()
    if bind:
        workspace = Path(source_dir)
    else:
        workspace = root / "workspace" / Path(source_dir).name
        shutil.copytree(source_dir, workspace, symlinks=True)
    return JobDirs(root, workspace, temp, files, tool_cache, owned_workspace=not bind)


def new_file(dirs: JobDirs, stem: str) -> str:
    """An empty file for one step (GITHUB_ENV, GITHUB_OUTPUT, ...): fresh for every step."""
    fd, path = tempfile.mkstemp(prefix=stem + "-", dir=dirs.files)
    os.close(fd)
    return path

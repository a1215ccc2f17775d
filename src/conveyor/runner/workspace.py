"""The directories one job runs in: a fresh workspace and its private temp area."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobDirs:
    """`workspace` is GITHUB_WORKSPACE; `temp` is RUNNER_TEMP; `files` holds env files and scripts."""

    root: Path
    workspace: Path
    temp: Path
    files: Path
    tool_cache: Path
    bound: bool
    """The workspace is the user's own directory (`--bind`): never emptied."""


class Slots:
    """Directory trees for jobs, each kept and reused from one job to the next.

    Creating a file or a directory is the dearest thing a short job does on
    some filesystems (ext4 spent up to 0.6 ms per inode here under churn,
    truncating an existing file 0.01 ms), so a tree outlives its job: on
    release its workspace and RUNNER_TEMP are emptied, its env files and
    scripts truncated, and the next job gets it. Nothing of one job reaches the
    next; a tree that cannot be fully emptied, or whose directories a job
    replaced, is dropped instead of reused.
    """

    def __init__(self, parent: str | None) -> None:
        self._parent = parent
        self._free: list[Path] = []

    def acquire(self, source_dir: str | None, *, bind: bool, name: str = "") -> JobDirs:
        """A tree for one job; its workspace is a copy of `source_dir`.

        The copy keeps jobs from seeing each other's files (only artifacts and
        outputs cross between jobs). With `bind`, the job runs in `source_dir`.
        Without a `source_dir` the workspace starts empty, named after the
        repository `name` ("owner/repo") as GitHub's runner names it.
        """
        root = self._free.pop() if self._free else self._new_root()
        temp, files, tool_cache = root / "temp", root / "files", root / "tool-cache"
        for d in (temp, files, tool_cache):
            d.mkdir(exist_ok=True)
        if source_dir is None:
            base = name.rsplit("/", 1)[-1]
            workspace = root / "workspace" / (base if base not in ("", ".", "..") else "workspace")
            _only_child(workspace)
            workspace.mkdir(parents=True, exist_ok=True)
        elif bind:
            workspace = Path(source_dir)
        else:
            workspace = root / "workspace" / Path(source_dir).name
            _only_child(workspace)
            copy_checkout(source_dir, str(workspace))
        return JobDirs(
            root, workspace, temp, files, tool_cache, bound=bind and source_dir is not None
        )

    def _new_root(self) -> Path:
        if self._parent is not None:
            os.makedirs(self._parent, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="job-", dir=self._parent))

    def release(self, dirs: JobDirs) -> None:
        """Empty the tree for the next job, or drop it when it cannot be emptied."""
        if _reusable(dirs):
            self._free.append(dirs.root)
        else:
            shutil.rmtree(dirs.root, ignore_errors=True)

    def close(self) -> None:
        """Remove the kept trees."""
        while self._free:
            shutil.rmtree(self._free.pop(), ignore_errors=True)


def _only_child(path: Path) -> None:
    """Remove what else the parent of `path` holds (an earlier job's repository)."""
    try:
        entries = [e.path for e in os.scandir(path.parent) if e.name != path.name]
    except FileNotFoundError:
        return
    for entry in entries:
        _remove(entry)


def _reusable(dirs: JobDirs) -> bool:
    """Empty `dirs` for the next job; -> whether it is now as good as new."""
    real = [dirs.temp, dirs.files, dirs.tool_cache]
    if not dirs.bound:
        real += [dirs.workspace.parent, dirs.workspace]
    if not all(_is_real_dir(d) for d in real):
        return False
    emptied = (
        [dirs.temp, dirs.tool_cache] if dirs.bound else [dirs.temp, dirs.tool_cache, dirs.workspace]
    )
    try:
        with os.scandir(dirs.files) as entries:
            for entry in list(entries):
                if entry.is_file(follow_symlinks=False):
                    os.truncate(entry.path, 0)  # scripts may hold rendered secrets
                else:
                    _remove(entry.path)
        for d in emptied:
            for name in os.listdir(d):
                _remove(os.path.join(d, name))
        with os.scandir(dirs.files) as entries:
            if not all(entry.is_file(follow_symlinks=False) for entry in entries):
                return False
        return not any(os.listdir(d) for d in emptied)
    except OSError:
        return False


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


def copy_checkout(source: str, dest: str) -> None:
    """Copy a working tree, uncommitted changes included, sharing its git objects.

    The copy's `.git` borrows the source's object database through
    `objects/info/alternates` (as `git clone --shared` does) instead of copying
    it: thousands of object files would dominate a job's start-up. Commits made
    in the copy go to its own object store; the source is never written.
    """
    shutil.copytree(
        source,
        dest,
        symlinks=True,
        ignore=lambda d, names: [".git"] if d == source else [],
        dirs_exist_ok=True,
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

"""The directories one job runs in: a fresh workspace and its private temp area."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
from collections import deque
from collections.abc import Iterable
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


class Slots:
    """Directory trees for jobs, each kept and reused from one job to the next.

    Creating a file or a directory is the dearest thing a short job does on
    some filesystems (ext4 spent up to 0.6 ms per inode here under churn,
    truncating an existing file 0.01 ms), so a tree outlives its job. On
    release the job's data goes: the step scripts, event payload and env
    files (they may hold rendered secrets) are truncated, and what the job
    put in its workspace, temp and tool-cache directories is removed. A
    released tree is handed out again once the job's stray processes are gone:
    when `gone` is told so (the runner's lease guard kills them and says when
    none is left), or at the latest `reuse_after` seconds after its release
    (the guard kills them within that time). It is cleaned again then, whole:
    whatever is there that the next job must not see (what a stray process
    wrote late, a link, a changed mode) is removed or put right, and the
    workspace directory is kept for a job whose workspace has its name. Links
    are removed, never followed; a tree that cannot be cleaned is dropped.
    """

    def __init__(self, parent: str | None, *, reuse_after: float = 0.0) -> None:
        self._parent = parent
        self._reuse_after = reuse_after
        self._free: deque[_Kept] = deque()
        """Released trees, oldest first."""
        self._waiting: set[str] = set()
        """The markers of released trees not yet known to be free of their job's
        processes."""

    def acquire(self, source_dir: str | None, *, bind: bool, name: str = "") -> JobDirs:
        """A tree for one job; its workspace is a copy of `source_dir`.

        The copy keeps jobs from seeing each other's files (only artifacts and
        outputs cross between jobs). With `bind`, the job runs in `source_dir`.
        Without a `source_dir` the workspace starts empty, named after the
        repository `name` ("owner/repo") as GitHub's runner names it.
        """
        base = name.rsplit("/", 1)[-1] if source_dir is None else Path(source_dir).name
        base = base if base not in ("", ".", "..") else "workspace"
        root = self._reused(base) or self._new_root()
        temp, files, tool_cache = root / "temp", root / "files", root / "tool-cache"
        for d in (temp, files, tool_cache, root / "workspace"):
            with contextlib.suppress(FileExistsError):  # a real directory: `_cleaned` saw
                os.mkdir(d, 0o700)
        if bind and source_dir is not None:
            return JobDirs(root, Path(source_dir), temp, files, tool_cache)
        workspace = root / "workspace" / base
        try:
            os.mkdir(workspace)
            os.chmod(workspace, _DIR_MODE)
        except FileExistsError:  # the last job's, emptied by `_cleaned`
            pass
        if source_dir is not None:
            copy_checkout(source_dir, str(workspace))
        return JobDirs(root, workspace, temp, files, tool_cache)

    def release(self, dirs: JobDirs, marker: str = "") -> None:
        """Take the job's data out of the tree and keep it, to be reused once `gone`
        says the processes marked `marker` are gone, or `reuse_after` seconds from
        now; or drop it when that does not go through."""
        if not _scrubbed(dirs):
            shutil.rmtree(dirs.root, ignore_errors=True)
            return
        self._free.append(_Kept(dirs.root, time.monotonic(), marker))
        if marker:
            self._waiting.add(marker)

    def gone(self, markers: Iterable[str]) -> None:
        """No process marked with one of `markers` is left: their trees may serve now."""
        self._waiting.difference_update(markers)

    def close(self) -> None:
        """Remove the kept trees."""
        self._waiting.clear()
        while self._free:
            shutil.rmtree(self._free.popleft().root, ignore_errors=True)

    def _reused(self, workspace: str) -> Path | None:
        """The oldest tree free of its job's processes, cleaned for a job whose
        workspace directory is named `workspace`."""
        while (kept := self._oldest_free()) is not None:
            self._free.remove(kept)
            self._waiting.discard(kept.marker)
            if _cleaned(kept.root, workspace):
                return kept.root
            shutil.rmtree(kept.root, ignore_errors=True)
        return None

    def _oldest_free(self) -> _Kept | None:
        released_before = time.monotonic() - self._reuse_after
        for kept in self._free:
            told_gone = kept.marker and kept.marker not in self._waiting
            if told_gone or kept.released_at <= released_before:
                return kept
        return None

    def _new_root(self) -> Path:
        if self._parent is not None:
            os.makedirs(self._parent, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="job-", dir=self._parent))


@dataclass(frozen=True, eq=False)
class _Kept:
    """A released tree."""

    root: Path
    released_at: float
    """Its release's monotonic time."""
    marker: str
    """What its job's processes are marked with (see runner.guard), if anything: once
    the marker is no longer waited on, they are known to be gone."""


_KEPT = ("files", "temp", "tool-cache", "workspace")
"""What a tree holds between jobs (only `files` holds anything: empty files)."""
_UID = os.getuid()
_DIR_MODE = 0o755
"""A workspace directory's mode, whatever the umask: a kept one is put back to it."""


def _scrubbed(dirs: JobDirs) -> bool:
    """Truncate the tree's files, remove what the job put in its directories (never
    following a link); -> whether that went through. A directory that is gone or no
    longer a directory of ours is left to `_cleaned`."""
    workspace = dirs.workspace if dirs.workspace.parent.parent == dirs.root else None
    try:
        if _still_ours(dirs.files):
            _empty_env_files(str(dirs.files))
        for directory in (dirs.temp, dirs.tool_cache, workspace):
            if directory is not None and _still_ours(directory):
                _empty(str(directory))
    except OSError:
        return False
    return True


def _still_ours(path: Path) -> bool:
    try:
        return _real_dir(path)
    except FileNotFoundError:
        return False


def _cleaned(root: Path, workspace: str) -> bool:
    """Remove what the last job left in its tree (never following a link), keeping the
    env files, truncated, and the workspace directory named `workspace`, emptied;
    -> whether all of that went through."""
    try:
        if not _real_dir(root, 0o700):
            return False
        for entry in _entries(str(root)):
            if entry.name not in _KEPT or not _real_dir(entry.path, 0o700):
                _remove(entry.path)  # `acquire` makes a kept one again
            elif entry.name == "files":
                _empty_env_files(entry.path)
            elif entry.name == "workspace":
                for inner in _entries(entry.path):
                    if inner.name == workspace and _real_dir(inner.path, _DIR_MODE):
                        _empty(inner.path)
                    else:
                        _remove(inner.path)
            else:
                _empty(entry.path)
    except OSError:
        return False
    return True


def _empty(directory: str) -> None:
    """Remove everything in `directory`, never following a link."""
    for entry in _entries(directory):
        _remove(entry.path)


def _empty_env_files(directory: str) -> None:
    """Truncate the plain files of ours in `directory` (env files, scripts: they may hold
    rendered secrets); remove anything else."""
    for entry in _entries(directory):
        if not (_as_wanted(entry) or _truncated(entry.path)):
            _remove(entry.path)


def _entries(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as entries:
        return list(entries)


def _as_wanted(entry: os.DirEntry[str]) -> bool:
    """Whether an env file is already as `_truncated` leaves one (seen without opening it:
    most files of most jobs stay empty)."""
    try:
        return _empty_env_file(entry.stat(follow_symlinks=False))
    except OSError:
        return False


def _empty_env_file(info: os.stat_result) -> bool:
    """An empty regular file of ours with one link and mode 0600 (as `_truncated` leaves one)."""
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_nlink == 1
        and info.st_size == 0
        and info.st_uid == _UID
        and stat.S_IMODE(info.st_mode) == 0o600
    )


def _truncated(path: str) -> bool:
    """Empty a file of the tree in place if it is a plain file of ours with one link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid != _UID:
            return False
        if info.st_size:  # an empty file is left alone: even a no-op truncation is a write
            os.ftruncate(fd, 0)
        if stat.S_IMODE(info.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _real_dir(path: Path | str, mode: int | None = None) -> bool:
    """Whether `path` is a directory of ours (not a link); with `mode`, now of that mode."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != _UID:
        return False
    if mode is not None and stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)  # whatever the last job made of it
    return True


def _remove(path: str) -> None:
    """Remove a file, a link or a directory tree, never following a link; OSError when
    any of it is left."""
    try:
        os.rmdir(path)  # jobs mostly leave an empty directory: 1 system call, rmtree makes 13
        return
    except FileNotFoundError:
        return
    except OSError:  # not empty, or not a directory (rmdir never follows a link)
        pass
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
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


def rewrite(path: str, data: bytes, mode: int = 0o600) -> None:
    """Make `data` the contents of the file at `path` (never a link), with `mode`.

    Written over the old contents and cut to length, not truncated first:
    on ext4, a file truncated by its opening is written out to disk when it is
    closed (a guard for programs that replace files that way), ~30 µs of CPU
    and ~100 µs of waiting a file here, for files a job's end empties anyway.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # whatever an earlier step made of it
        written = 0
        while written < len(data):
            written += os.pwrite(fd, data[written:], written)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


STEP_FILES = ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_STEP_SUMMARY", "GITHUB_STATE")


def step_files(dirs: JobDirs) -> dict[str, str]:
    """The environment files for the next step, each empty.

    GitHub gives every step fresh files; emptying the job's own set gives the
    same view without creating five files a step (file creation costs ~0.2 ms
    each on some filesystems, truncation ~0.01 ms). Most steps write none of
    them: a file that is already an empty plain file of ours is seen with one
    lstat and left alone. Anything else a step made of one (a link, a pipe)
    is replaced, never followed.
    """
    files = {name: os.path.join(dirs.files, name.lower()) for name in STEP_FILES}
    for path in files.values():
        try:
            ready = _empty_env_file(os.lstat(path))
        except FileNotFoundError:
            ready = False
        if not (ready or _truncated(path)):
            _remove(path)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    return files

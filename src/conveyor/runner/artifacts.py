"""Artifacts: named sets of files a job uploads and a later job of the run downloads."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from typing import Protocol

from conveyor.errors import ExecutionError

_FORBIDDEN = re.compile(r'[\x00-\x1f"*:<>?|\\/]')
MAX_NAME = 255


def check_name(name: str) -> str:
    """An artifact name as GitHub allows it: no path separators or wildcards, not `.`/`..`."""
    if not name or not name.strip():
        raise ExecutionError("artifact name is empty")
    if len(name) > MAX_NAME:
        raise ExecutionError(f"artifact name is longer than {MAX_NAME} characters")
    if _FORBIDDEN.search(name) or name in (".", ".."):
        raise ExecutionError(
            f'artifact name {name!r} is invalid: it may not contain " : < > | * ? \\ / '
            "or control characters"
        )
    return name


def check_relpath(relpath: str) -> str:
    """A file path inside an artifact: relative, no `..`, no absolute or empty parts."""
    parts = relpath.replace("\\", "/").split("/")
    if relpath.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in relpath:
        raise ExecutionError(f"artifact file path {relpath!r} is not a plain relative path")
    return "/".join(parts)


class ArtifactStore(Protocol):
    """Where a run's artifacts live (a directory locally; the server's blob store remotely)."""

    async def upload(self, name: str, root: str, relpaths: Sequence[str]) -> int:
        """Store the files `root/relpath` under `name`; -> bytes stored."""

    async def download(self, name: str, dest: str) -> int:
        """Write artifact `name`'s files below `dest`; -> number of files."""

    async def names(self) -> list[str]: ...


class DirectoryArtifactStore:
    """Artifacts of one run as directories below `root`, one per name."""

    def __init__(self, root: str, *, max_bytes: int = 1 << 30) -> None:
        self._root = root
        self._max = max_bytes
        os.makedirs(root, exist_ok=True)

    async def upload(self, name: str, root: str, relpaths: Sequence[str]) -> int:
        target = os.path.join(self._root, check_name(name))
        if os.path.exists(target):
            raise ExecutionError(f"an artifact named {name!r} already exists in this run")
        total = 0
        for rel in relpaths:
            source = os.path.join(root, check_relpath(rel))
            total += os.path.getsize(source)
            if total > self._max:
                shutil.rmtree(target, ignore_errors=True)
                raise ExecutionError(f"artifact {name!r} is larger than {self._max} bytes")
            dest = os.path.join(target, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(source, dest)
        os.makedirs(target, exist_ok=True)
        return total

    async def download(self, name: str, dest: str) -> int:
        source = os.path.join(self._root, check_name(name))
        if not os.path.isdir(source):
            raise ExecutionError(f"no artifact named {name!r} in this run")
        count = 0
        for folder, _dirs, files in os.walk(source):
            for file in files:
                rel = os.path.relpath(os.path.join(folder, file), source)
                out = os.path.join(dest, rel)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                shutil.copyfile(os.path.join(folder, file), out)
                count += 1
        return count

    async def names(self) -> list[str]:
        return sorted(os.listdir(self._root))

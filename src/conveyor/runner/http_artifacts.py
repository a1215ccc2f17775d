"""Artifacts kept by the server: files go up as a tar stream and come back unpacked with care.

`pack` writes regular files only, under names checked to be plain relative
paths. `unpack` trusts nothing in the stream it reads: it refuses links,
devices, absolute names and `..`, never writes through a symlink, and
never leaves `dest`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from typing import IO

from conveyor.errors import ExecutionError, LeaseLost
from conveyor.runner.artifacts import check_name, check_relpath
from conveyor.runner.http_channel import Backoff, HttpChannel, Refused, ServerUnavailable

SPOOL_BYTES = 8 << 20
"""Tar streams up to this size stay in memory; larger ones go to a temporary file."""

logger = logging.getLogger("conveyor.runner")


def pack(root: str, relpaths: Sequence[str], sink: IO[bytes]) -> int:
    """Write `root/relpath` for each path as a tar stream into `sink`; -> bytes of file data."""
    total = 0
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in relpaths:
            name = check_relpath(rel)
            path = os.path.join(root, name)
            try:
                # O_NONBLOCK: opening a FIFO must not wait for a writer (fstat then refuses it).
                with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
                    info = _file_info(name, os.fstat(f.fileno()))
                    tar.addfile(info, f)
            except OSError as exc:
                raise ExecutionError(f"cannot pack {path}: {exc.strerror or exc}") from None
            total += info.size
    return total


def _file_info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    if not stat.S_ISREG(st.st_mode):
        raise ExecutionError(f"artifact file {name!r} is not a regular file")
    info = tarfile.TarInfo(name)
    info.size = st.st_size
    info.mtime = int(st.st_mtime)
    info.mode = 0o755 if st.st_mode & 0o111 else 0o644
    return info


def unpack(source: IO[bytes], dest: str) -> int:
    """Extract the regular files of a tar stream below `dest`; -> how many.

    Raises ExecutionError on an entry that is not a plain file or directory
    with a plain relative name, or that would land outside `dest`.
    """
    os.makedirs(dest, exist_ok=True)
    top = os.path.realpath(dest)
    count = 0
    try:
        with tarfile.open(fileobj=source, mode="r|*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if member.isdir() and name in ("", "."):
                    continue
                rel = check_relpath(name)
                if not (member.isfile() or member.isdir()):
                    raise ExecutionError(f"artifact entry {rel!r} is a link or a device")
                target = os.path.join(top, *rel.split("/"))
                parent = target if member.isdir() else os.path.dirname(target)
                # realpath resolves the symlinks that already exist on the way to `parent`.
                if os.path.commonpath([top, os.path.realpath(parent)]) != top:
                    raise ExecutionError(f"artifact entry {rel!r} would be written outside {dest}")
                os.makedirs(parent, exist_ok=True)
                if member.isfile():
                    _write(tar, member, target)
                    count += 1
    except tarfile.TarError as exc:
        raise ExecutionError(f"the artifact is not a valid tar stream: {exc}") from None
    except OSError as exc:
        raise ExecutionError(f"cannot unpack the artifact: {exc.strerror or exc}") from None
    return count


def _write(tar: tarfile.TarFile, member: tarfile.TarInfo, target: str) -> None:
    data = tar.extractfile(member)
    assert data is not None  # a regular file always has data
    mode = 0o755 if member.mode & 0o111 else 0o644
    # O_NOFOLLOW: a symlink planted at the target is refused, not written through.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with data, os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(data, out)


class HttpArtifactStore:
    """The run's artifacts on the server, reached through one job's lease."""

    def __init__(
        self,
        channel: HttpChannel,
        job_id: str,
        epoch: int,
        *,
        on_lost: Callable[[str], None] | None = None,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self._channel = channel
        self._job_id = job_id
        self._epoch = epoch
        self._on_lost = on_lost
        self._backoff = backoff

    async def upload(self, name: str, root: str, relpaths: Sequence[str]) -> int:
        check_name(name)
        for rel in relpaths:
            check_relpath(rel)
        with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as spool:
            total = await asyncio.to_thread(pack, root, relpaths, spool)
            size = spool.tell()

            async def put() -> None:
                spool.seek(0)
                await self._channel.put_artifact(self._job_id, self._epoch, name, spool, size)

            await self._retrying(f"upload artifact {name!r}", put)
        return total

    async def download(self, name: str, dest: str) -> int:
        check_name(name)
        with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as spool:

            async def get() -> None:
                spool.seek(0)
                spool.truncate()
                await self._channel.get_artifact(self._job_id, name, spool)

            await self._retrying(f"download artifact {name!r}", get)
            spool.seek(0)
            return await asyncio.to_thread(unpack, spool, dest)

    async def names(self) -> list[str]:
        found: list[str] = []

        async def fetch() -> None:
            found[:] = await self._channel.list_artifacts(self._job_id)

        await self._retrying("list the run's artifacts", fetch)
        return sorted(found)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[None]]) -> None:
        """Run `call`, retrying while the server is unreachable.

        The retries have no limit of their own: a job whose server stays away
        loses its lease, and the agent then cancels this call with the job.
        """
        backoff = self._backoff()
        failing = False
        while True:
            try:
                await call()
                return
            except ServerUnavailable as exc:
                if not failing:
                    logger.warning("job %s: cannot %s yet: %s", self._job_id, what, exc)
                failing = True
                await asyncio.sleep(backoff.next())
            except LeaseLost as exc:
                if self._on_lost is not None:
                    self._on_lost(f"the server refused to {what}: {exc}")
                raise ExecutionError(f"cannot {what}: the job's lease is lost") from None
            except Refused as exc:
                raise ExecutionError(f"cannot {what}: {_refusal(exc)}") from None


def _refusal(exc: Refused) -> str:
    if exc.code == "too_large":
        return "it is larger than the server accepts"
    if exc.code == "conflict":
        return "an artifact of that name already exists in this run"
    if exc.code == "not_found":
        return "no such artifact in this run"
    return str(exc)

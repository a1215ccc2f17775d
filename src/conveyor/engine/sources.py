"""Where a run's workflow files come from: a repository at the event's commit.

Repositories are mirrored (bare) into the data directory and read with
`git show <sha>:<path>`, never from a working tree, so a run always sees the
workflows of the commit it was triggered for.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

from conveyor.errors import ConveyorError

WORKFLOWS_DIR = ".github/workflows"


class SourceError(ConveyorError):
    """A repository or a file in it could not be read."""


class RepositoryMirror:
    """Bare mirrors of registered repositories under `root`."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._locks: dict[str, asyncio.Lock] = {}

    def path_for(self, url: str) -> str:
        digest = hashlib.sha256(url.encode()).hexdigest()[:24]
        return os.path.join(self._root, f"{digest}.git")

    async def sync(self, url: str) -> str:
        """Clone or fetch `url` into its mirror; -> the mirror's path."""
        path = self.path_for(url)
        async with self._locks.setdefault(path, asyncio.Lock()):
            if os.path.isdir(path):
                await _git("--git-dir", path, "fetch", "--prune", "--quiet", "origin")
            else:
                os.makedirs(self._root, exist_ok=True)
                await _git("clone", "--mirror", "--quiet", url, path)
        return path

    async def resolve(self, url: str, ref: str) -> str:
        """The commit `ref` names in the mirror."""
        out = await _git(
            "--git-dir", self.path_for(url), "rev-parse", "--verify", f"{ref}^{{commit}}"
        )
        return out.strip()

    async def show(self, url: str, sha: str, path: str) -> str:
        mirror = self.path_for(url)
        if not os.path.isdir(mirror):
            await self.sync(url)
        return await _git("--git-dir", mirror, "show", f"{sha}:{path}")

    async def workflow_files(self, url: str, sha: str) -> list[str]:
        out = await _git(
            "--git-dir", self.path_for(url), "ls-tree", "--name-only", sha, WORKFLOWS_DIR + "/"
        )
        return sorted(p for p in out.splitlines() if p.endswith((".yml", ".yaml")))


GIT_TIMEOUT = 300.0
"""How long one git command may take: a remote that hangs must not hold a webhook's
request, or cron's loop, forever."""


async def _git(*args: str) -> str:
    what = f"git {args[-2] if len(args) > 1 else ''}"
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), GIT_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise SourceError(f"{what}: no answer in {GIT_TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        message = err.decode("utf-8", "replace").strip().splitlines()
        raise SourceError(f"{what}: {message[-1] if message else 'failed'}")
    return out.decode("utf-8", "replace")

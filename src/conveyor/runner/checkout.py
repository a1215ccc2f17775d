"""Server-mode `actions/checkout`: fetch the run's commit into the job's empty workspace.

`git init`, then `git fetch --depth 1 origin <sha>`; a server that refuses to
send a commit by its id (protocol v0 without allowAnySHA1InWant) gets a
full fetch of its branches and tags instead, after which the commit is
checked out by id. The work tree ends on a detached HEAD at exactly `sha`.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from conveyor.errors import ExecutionError
from conveyor.runner.process import run_process

if TYPE_CHECKING:
    from conveyor.runner.executor import JobState

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class _GitFailed(ExecutionError):
    """A git command exited non-zero."""


class _Cancelled(ExecutionError):
    """The job was cancelled while git ran."""


async def fetch_commit(
    url: str,
    sha: str,
    dest: str,
    *,
    ref: str = "",
    depth: int = 1,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] = lambda line: None,
    cancel: asyncio.Event | None = None,
) -> None:
    """Make `dest` a git work tree at commit `sha` of the repository at `url`.

    `depth` 0 fetches the whole history. Raises ExecutionError when git
    fails or the arguments could pass for options.
    """
    if not _SHA.fullmatch(sha):
        raise ExecutionError(f"checkout: {sha!r} is not a full commit id")
    if not url or url.startswith("-"):
        raise ExecutionError(f"checkout: {url!r} is not a repository URL")
    os.makedirs(dest, exist_ok=True)
    git_env = {**(os.environ if env is None else env), "GIT_TERMINAL_PROMPT": "0"}

    async def git(*args: str) -> None:
        result = await run_process(
            ["git", *args], cwd=dest, env=git_env, on_line=on_line, cancel=cancel
        )
        if result.cancelled:
            raise _Cancelled("checkout: cancelled")
        if result.exit_code != 0:
            raise _GitFailed(f"checkout: `git {args[0]}` failed with exit code {result.exit_code}")

    await git("init", "--quiet")
    await git("remote", "add", "origin", url)
    try:
        shallow = ["--depth", str(depth)] if depth > 0 else []
        await git("fetch", "--no-tags", *shallow, "origin", sha)
        target = "FETCH_HEAD"
    except _GitFailed:
        on_line("The server does not send commits by id; fetching all branches and tags")
        await git("fetch", "--tags", "origin", *_refspecs(ref))
        target = sha
    await git("checkout", "--quiet", "--detach", target)


def _refspecs(ref: str) -> list[str]:
    """Every branch, and the event's ref when it is neither a branch nor a tag (a pull ref)."""
    specs = ["+refs/heads/*:refs/remotes/origin/*"]
    if ref.startswith("refs/") and not ref.startswith(("refs/heads/", "refs/tags/")):
        specs.append(f"+{ref}:refs/remotes/origin/{ref.removeprefix('refs/')}")
    return specs


async def run_checkout(
    state: JobState, inputs: Mapping[str, str], index: int
) -> tuple[str, dict[str, str]]:
    """`actions/checkout` when the assignment names a commit; -> (outcome, outputs)."""
    spec = state.assignment.checkout
    assert spec is not None
    url, sha, ref = str(spec.get("url", "")), str(spec.get("sha", "")), str(spec.get("ref", ""))
    repository = inputs.get("repository", "")
    own = str(state.assignment.contexts.get("github", {}).get("repository", ""))
    if repository and repository.lower() != own.lower():
        raise ExecutionError(
            f"checkout: only this run's repository ({own}) can be checked out, not {repository}"
        )
    dest = os.path.normpath(os.path.join(state.workspace, inputs.get("path") or "."))
    if os.path.commonpath([state.workspace, dest]) != state.workspace:
        raise ExecutionError(f"checkout: path {inputs['path']!r} leaves the workspace")
    raw_depth = inputs.get("fetch-depth") or "1"
    try:
        depth = int(raw_depth)
    except ValueError:
        raise ExecutionError(f"checkout: fetch-depth {raw_depth!r} is not a number") from None
    reporter, masker = state.reporter, state.masker
    # As for `run:` steps: once the job is cancelled, a step that still runs is not interrupted.
    cancel = None if state.cancelled else reporter.cancel
    try:
        await fetch_commit(
            url,
            sha,
            dest,
            ref=ref,
            depth=max(depth, 0),
            env=state.process_env({}),
            on_line=lambda line: reporter.log(index, masker.mask(line)),
            cancel=cancel,
        )
    except _Cancelled:
        state.cancelled = True
        return "cancelled", {}
    return "success", {"ref": ref, "commit": sha}

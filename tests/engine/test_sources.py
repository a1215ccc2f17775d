"""Repository mirrors: workflows come from the event's commit; a hanging remote gives up."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from conveyor.engine import sources
from conveyor.engine.sources import RepositoryMirror, SourceError

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]


def _commit(repo: Path, text: str) -> str:
    workflow = repo / ".github" / "workflows" / "ci.yml"
    workflow.parent.mkdir(parents=True, exist_ok=True)
    workflow.write_text(text)
    subprocess.run([*GIT, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-qm", text], check=True)
    out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True)
    return out.stdout.decode().strip()


def test_workflows_are_read_at_the_commit_not_from_the_working_tree(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    first = _commit(repo, "first")
    second = _commit(repo, "second")
    (repo / ".github" / "workflows" / "ci.yml").write_text("uncommitted")
    mirror = RepositoryMirror(str(tmp_path / "mirrors"))

    async def read() -> tuple[str, str, str, list[str]]:
        url = str(repo)
        await mirror.sync(url)
        return (
            await mirror.show(url, first, ".github/workflows/ci.yml"),
            await mirror.show(url, second, ".github/workflows/ci.yml"),
            await mirror.resolve(url, "HEAD"),
            await mirror.workflow_files(url, first),
        )

    at_first, at_second, head, files = asyncio.run(read())
    assert (at_first, at_second, head) == ("first", "second", second)
    assert files == [".github/workflows/ci.yml"]


def test_a_remote_that_never_answers_is_given_up_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A git daemon that accepts the connection and then says nothing."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    monkeypatch.setattr(sources, "GIT_TIMEOUT", 1.0)
    mirror = RepositoryMirror(str(tmp_path / "mirrors"))
    url = f"git://127.0.0.1:{listener.getsockname()[1]}/repo.git"
    try:
        with pytest.raises(SourceError, match=r"^git .*: no answer in 1 s$"):
            asyncio.run(mirror.sync(url))
    finally:
        for conn in held:
            conn.close()
        listener.close()

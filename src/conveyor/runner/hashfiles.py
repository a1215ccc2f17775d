"""`hashFiles()`: one SHA-256 over the files of the workspace that match the patterns."""

from __future__ import annotations

import os
from collections.abc import Sequence

from conveyor.workflow.glob import match_filters


def hash_files(workspace: str, patterns: Sequence[str]) -> str:
    """GitHub's algorithm: the SHA-256 of each matching file's SHA-256, in path order.

    '' when nothing matches. Patterns are relative to the workspace; `!` excludes.
    """
    if not patterns:
        return ""
    matched: list[str] = []
    for folder, dirs, files in os.walk(workspace):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in files:
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, workspace).replace(os.sep, "/")
            if match_filters(list(patterns), rel):
                matched.append(full)
    if not matched:
        return ""
    import hashlib  # only when a workflow calls hashFiles

    outer = hashlib.sha256()
    for path in sorted(matched):
        inner = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 16), b""):
                inner.update(chunk)
        outer.update(inner.digest())
    return outer.hexdigest()

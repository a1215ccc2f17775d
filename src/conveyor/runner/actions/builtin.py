"""The built-in actions: checkout, upload-artifact, download-artifact (no network)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from conveyor.errors import ExecutionError
from conveyor.expr import render_value, to_string
from conveyor.workflow.glob import compile_glob

if TYPE_CHECKING:
    from conveyor.runner.executor import JobState
    from conveyor.runner.steps import Scope
    from conveyor.workflow.model import Step


async def run_builtin(
    name: str, state: JobState, scope: Scope, step: Step, ctx: Mapping[str, Any]
) -> tuple[str, dict[str, str]]:
    from conveyor.runner.steps import environment_for

    given = render_value(dict(step.with_), environment_for(state, scope, ctx))
    inputs = {str(k).lower(): to_string(v) for k, v in given.items()}
    index = scope.log_index if scope.log_index is not None else step.index
    if name == "actions/checkout" and state.assignment.checkout is not None:
        from conveyor.runner.checkout import run_checkout

        return await run_checkout(state, inputs, index)
    if name == "actions/checkout":
        # The workspace already holds the event's tree (a copy of the repository).
        state.reporter.log(
            None, f"checkout: workspace {state.workspace} already holds the repository"
        )
        return "success", {}
    if state.artifacts is None:
        raise ExecutionError(f"{name}: this runner has no artifact store")
    if name == "actions/upload-artifact":
        return await _upload(state, inputs)
    return await _download(state, inputs)


async def _upload(state: JobState, inputs: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    assert state.artifacts is not None
    name = inputs.get("name") or "artifact"
    patterns = [p.strip() for p in inputs.get("path", "").splitlines() if p.strip()]
    if not patterns:
        raise ExecutionError("upload-artifact: input 'path' is required")
    root, relpaths = collect(state.workspace, patterns)
    if not relpaths:
        mode = inputs.get("if-no-files-found", "warn").lower()
        message = (
            f"upload-artifact: no files were found with the provided path: {', '.join(patterns)}"
        )
        if mode == "error":
            raise ExecutionError(message)
        if mode == "warn":
            state.reporter.log(None, f"##[warning]{message}. No artifacts will be uploaded.")
        return "success", {}
    size = await state.artifacts.upload(name, root, relpaths)
    state.reporter.log(None, f"upload-artifact: {name}: {len(relpaths)} file(s), {size} bytes")
    return "success", {"artifact-id": name}


async def _download(state: JobState, inputs: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    assert state.artifacts is not None
    dest = os.path.normpath(
        os.path.join(state.workspace, os.path.expanduser(inputs.get("path") or "."))
    )
    name = inputs.get("name")
    if name:
        count = await state.artifacts.download(name, dest)
        state.reporter.log(None, f"download-artifact: {name}: {count} file(s)")
    else:
        for each in await state.artifacts.names():
            await state.artifacts.download(each, os.path.join(dest, each))
    return "success", {"download-path": dest}


def collect(workspace: str, patterns: list[str]) -> tuple[str, list[str]]:
    """Files matched by upload-artifact's `path` lines -> (root, paths relative to root).

    The root is the least common ancestor of the patterns' literal prefixes, as
    upload-artifact does; `!pattern` lines exclude.
    """
    includes = [p for p in patterns if not p.startswith("!")]
    excludes = [compile_glob(_rel(workspace, p[1:])) for p in patterns if p.startswith("!")]
    found: set[str] = set()
    prefixes: list[str] = []
    for pattern in includes:
        full = os.path.normpath(os.path.join(workspace, os.path.expanduser(pattern)))
        if not any(ch in pattern for ch in "*?["):
            prefixes.append(full if os.path.isdir(full) else os.path.dirname(full))
            if os.path.isfile(full):
                found.add(full)
            elif os.path.isdir(full):
                found.update(_walk(full))
            continue
        literal = _literal_prefix(full)
        prefixes.append(literal)
        glob = compile_glob(os.path.relpath(full, literal).replace(os.sep, "/"))
        for path in _walk(literal):
            if glob.match(os.path.relpath(path, literal).replace(os.sep, "/")):
                found.add(path)
    kept = [
        p
        for p in found
        if not any(g.match(os.path.relpath(p, workspace).replace(os.sep, "/")) for g in excludes)
    ]
    if not kept:
        return workspace, []
    root = os.path.commonpath(prefixes) if prefixes else workspace
    return root, sorted(os.path.relpath(p, root).replace(os.sep, "/") for p in kept)


def _rel(workspace: str, pattern: str) -> str:
    full = os.path.normpath(os.path.join(workspace, pattern))
    return os.path.relpath(full, workspace).replace(os.sep, "/")


def _literal_prefix(path: str) -> str:
    parts = path.split(os.sep)
    kept: list[str] = []
    for part in parts:
        if any(ch in part for ch in "*?["):
            break
        kept.append(part)
    return os.sep.join(kept) or os.sep


def _walk(root: str) -> list[str]:
    out: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        out.extend(os.path.join(folder, f) for f in files)
    return out

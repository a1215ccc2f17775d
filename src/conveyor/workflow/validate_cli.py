"""`conveyor validate`: check workflow (and action) files, print every problem with its source line."""

from __future__ import annotations

import os
from typing import TextIO

from conveyor.errors import WorkflowError
from conveyor.workflow.parse import load_action, load_workflow, read_source

_SUFFIXES = (".yml", ".yaml")
_ACTION_NAMES = ("action.yml", "action.yaml")
_MAX_SHOWN_LINE = 300  # longer source lines are left out of the report rather than flood it


def validate_paths(paths: list[str], out: TextIO, err: TextIO) -> int:
    """Validate files and directories (their *.yml / *.yaml); 0 when all are valid, else 2."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            names = sorted(name for name in os.listdir(path) if name.endswith(_SUFFIXES))
            files.extend(os.path.join(path, name) for name in names)
        elif os.path.exists(path):
            files.append(path)
        else:
            print(f"conveyor validate: {path}: no such file or directory", file=err)
            return 2
    if not files:
        print(f"conveyor validate: no .yml or .yaml files in {', '.join(paths)}", file=err)
        return 2
    invalid = problems = 0
    for file in files:
        count = validate_file(file, err)
        invalid += count > 0
        problems += count
    valid = len(files) - invalid
    summary = f"{len(files)} file{'s' if len(files) != 1 else ''} checked: {valid} valid"
    if invalid:
        summary += f", {invalid} invalid ({problems} problem{'s' if problems != 1 else ''})"
    err.flush()  # the diagnostics come before the summary when both streams share a terminal
    print(summary, file=out)
    return 2 if invalid else 0


def validate_file(path: str, err: TextIO) -> int:
    """Print the diagnostics of one file on `err`; return how many there were."""
    source: str | None = None
    try:
        source = read_source(path, path)
        if os.path.basename(path) in _ACTION_NAMES:
            load_action(path, source)
        else:
            load_workflow(path, source)
    except WorkflowError as error:
        lines = source.splitlines() if source is not None else []
        for diagnostic in error.diagnostics:
            line = diagnostic.span.line
            shown = 1 <= line <= len(lines) and len(lines[line - 1]) <= _MAX_SHOWN_LINE
            print(diagnostic.render(source if shown else None), file=err)
        return len(error.diagnostics)
    return 0

"""Every exception Conveyor raises, and the positions they point at.

ConveyorError
 ├── WorkflowError            a workflow file cannot be used (carries Diagnostics)
 ├── ExpressionError          a ${{ }} expression is malformed or fails to evaluate
 │    └── ExpressionSyntaxError   (offset inside the expression text)
 ├── StoreError
 │    ├── NotFound
 │    ├── Conflict            a compare-and-set transition matched zero rows
 │    └── LeaseLost           a runner write carried a stale fencing token
 └── ExecutionError           a step could not be started (bad shell, missing action)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Span:
    """A position in a source file: 1-based line and column."""

    file: str
    line: int
    col: int

    def shifted(self, columns: int) -> Span:
        """The position `columns` characters further along the same line."""
        return Span(self.file, self.line, self.col + columns)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a workflow, with a stable code the UI and API show."""

    span: Span
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.span}: {self.message} [{self.code}]"

    def render(self, source: str | None = None) -> str:
        """`file:line:col: message`, then the source line with a marker under the column."""
        text = str(self)
        if source is None:
            return text
        lines = source.splitlines()
        if 1 <= self.span.line <= len(lines):
            line = lines[self.span.line - 1]
            marker = " " * (max(self.span.col, 1) - 1) + "^"
            text += f"\n    {line}\n    {marker}"
        return text


class ConveyorError(Exception):
    """Base of every error Conveyor raises on purpose."""


class WorkflowError(ConveyorError):
    """A workflow file is invalid; `diagnostics` lists every problem found."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.span, d.code))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class ExpressionError(ConveyorError):
    """An expression failed to parse or evaluate."""


class ExpressionSyntaxError(ExpressionError):
    """Malformed expression; `offset` is the 0-based index into the expression text."""

    def __init__(self, message: str, offset: int) -> None:
        self.message = message
        self.offset = offset
        super().__init__(f"{message} (at offset {offset})")


class StoreError(ConveyorError):
    """A store operation could not be carried out."""


class NotFound(StoreError):
    """No such object (or it belongs to another tenant)."""


class Conflict(StoreError):
    """A compare-and-set transition matched no row: the object was not in an allowed state."""


class StaleWorkflow(Conflict):
    """A run was to be created from a workflow as read earlier, and it has changed (or was
    disabled or deleted) since: read it again."""


class LeaseLost(Conflict):
    """A runner write carried a fencing token that is no longer the job's lease epoch."""


class ExecutionError(ConveyorError):
    """A step could not be started: unknown shell, missing or unfetchable action."""

"""Rule: every `${{ }}` in the file parses, pointing at the column of the error inside it."""

from __future__ import annotations

from collections.abc import Iterator

from conveyor.errors import Diagnostic, ExpressionSyntaxError
from conveyor.expr import iter_expressions, parse
from conveyor.workflow.rules import Document, Path, walk_scalars
from conveyor.workflow.yamlload import YScalar


def expressions(doc: Document) -> Iterator[Diagnostic]:
    """expression-syntax, unknown-function: in any string of the file, keys included.

    `if:` of a job or step is an expression even without `${{ }}`.
    """
    for path, scalar, is_key in walk_scalars(doc.tree):
        if not isinstance(scalar.value, str):
            continue
        text = scalar.text
        if "${{" in text:
            yield from _template(scalar)
        elif not is_key and _is_condition(path) and text.strip():
            try:
                parse(text)
            except ExpressionSyntaxError as error:
                yield _diagnostic(scalar, error, 0)


def _template(scalar: YScalar) -> Iterator[Diagnostic]:
    try:
        for source, offset in iter_expressions(scalar.text):
            try:
                parse(source)
            except ExpressionSyntaxError as error:
                yield _diagnostic(scalar, error, offset)
    except ExpressionSyntaxError as error:  # an unclosed `${{`
        yield _diagnostic(scalar, error, 0)


def _diagnostic(scalar: YScalar, error: ExpressionSyntaxError, offset: int) -> Diagnostic:
    unknown = error.message.startswith("unknown function")
    code = "unknown-function" if unknown else "expression-syntax"
    return Diagnostic(scalar.position(offset + error.offset), code, error.message)


def _is_condition(path: Path) -> bool:
    """`jobs.<id>.if`, `jobs.<id>.steps[i].if`, or `runs.steps[i].if` of an action."""
    if path[-1:] != ("if",):
        return False
    if path[0] == "jobs":
        return len(path) == 3 or (len(path) == 5 and path[2] == "steps")
    return len(path) == 4 and path[:2] == ("runs", "steps")

"""Templates: text mixing literal parts and `${{ expr }}`, parsed once and rendered often.

A template that is exactly one `${{ }}` renders to the expression's raw value
(so `matrix: ${{ fromJSON(...) }}` yields an object); any other renders to a
string. The closing `}}` is found outside string literals, so
`${{ format('{{0}}', 1) }}` is one expression. `condition` turns an `if:`
value into a tree the way GitHub does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from conveyor.errors import ExpressionSyntaxError
from conveyor.expr.ast import Call, Literal, Logical, Node, context_names, is_status_call
from conveyor.expr.environment import Environment
from conveyor.expr.evaluate import evaluate
from conveyor.expr.lexer import string_end
from conveyor.expr.parser import parse
from conveyor.expr.values import to_string

OPEN, CLOSE = "${{", "}}"


@dataclass(frozen=True, slots=True)
class Expression:
    """One `${{ }}` of a template: its source, where that source starts in the text, its tree."""

    source: str
    offset: int
    node: Node


@dataclass(frozen=True)
class Template:
    """A parsed template: literal strings and Expressions, in order."""

    text: str
    segments: tuple[str | Expression, ...]

    @property
    def expressions(self) -> tuple[Expression, ...]:
        return tuple(part for part in self.segments if isinstance(part, Expression))

    @property
    def single(self) -> Expression | None:
        """The expression when the whole text is one `${{ }}` and nothing else."""
        if len(self.segments) == 1 and isinstance(self.segments[0], Expression):
            return self.segments[0]
        return None

    @property
    def is_literal(self) -> bool:
        """True when the text holds no `${{ }}` at all."""
        return not self.expressions


def iter_expressions(text: str) -> Iterator[tuple[str, int]]:
    """Each `${{ }}`'s source and its offset in `text`, without parsing them.

    Raises ExpressionSyntaxError (offset into `text`) for an unclosed `${{`.
    """
    for start, end in _spans(text):
        yield text[start + len(OPEN) : end], start + len(OPEN)


@lru_cache(maxsize=4096)
def parse_template(text: str) -> Template:
    """The template of `text`; errors carry their offset into `text`."""
    segments: list[str | Expression] = []
    pos = 0
    for source, offset in iter_expressions(text):
        start = offset - len(OPEN)
        if start > pos:
            segments.append(text[pos:start])
        try:
            node = parse(source)
        except ExpressionSyntaxError as error:
            raise ExpressionSyntaxError(error.message, offset + error.offset) from None
        segments.append(Expression(source, offset, node))
        pos = offset + len(source) + len(CLOSE)
    if pos < len(text):
        segments.append(text[pos:])
    return Template(text, tuple(segments))


def template_contexts(raw: Any) -> frozenset[str]:
    """The lower-cased context names that rendering `raw` (as `render_value` does) reads."""
    if isinstance(raw, str):
        if OPEN not in raw:
            return frozenset()
        found: set[str] = set()
        for expression in parse_template(raw).expressions:
            found |= context_names(expression.node)
        return frozenset(found)
    if isinstance(raw, Mapping):
        return frozenset().union(*(template_contexts(item) for item in raw.items()))
    if isinstance(raw, list | tuple):
        return frozenset().union(*(template_contexts(item) for item in raw))
    return frozenset()


def render(template: Template, env: Environment) -> Any:
    """The lone expression's raw value, else the text with each value as a string."""
    single = template.single
    if single is not None:
        return evaluate(single.node, env)
    return "".join(
        part if isinstance(part, str) else to_string(evaluate(part.node, env))
        for part in template.segments
    )


def render_value(raw: Any, env: Environment) -> Any:
    """`raw` with every string in it rendered, dict keys included (for env:, with:, matrix)."""
    if isinstance(raw, str):
        return render(parse_template(raw), env) if OPEN in raw else raw
    if isinstance(raw, Mapping):
        rendered: dict[Any, Any] = {}
        for key, value in raw.items():
            if isinstance(key, str):
                key = to_string(render_value(key, env))
            rendered[key] = render_value(value, env)
        return rendered
    if isinstance(raw, list | tuple):
        return [render_value(item, env) for item in raw]
    return raw


def condition(text: str | bool | float | None) -> Node:
    """The tree for an `if:` value, with GitHub's implicit `success() &&`.

    The value may be written with or without `${{ }}`; no value means
    `success()`. Text that holds `${{ }}` but is not one expression becomes
    `format(...)` of its parts, a non-empty string that is always true, as
    on GitHub. A condition that calls a status function anywhere is not wrapped.
    """
    if text is None:
        return _success()
    if isinstance(text, bool | int | float):
        return _with_success(Literal(text))
    if not isinstance(text, str):
        raise ExpressionSyntaxError("a condition must be an expression, not a mapping or a list", 0)
    return _text_condition(text)


@lru_cache(maxsize=4096)
def _text_condition(text: str) -> Node:
    stripped = text.strip()
    if not stripped:
        return _success()
    if OPEN not in stripped:
        return _with_success(parse(text))
    lead = len(text) - len(text.lstrip())
    try:
        template = parse_template(stripped)
    except ExpressionSyntaxError as error:
        raise ExpressionSyntaxError(error.message, lead + error.offset) from None
    single = template.single
    return _with_success(single.node if single is not None else _format_call(template))


def _with_success(node: Node) -> Node:
    if is_status_call(node):
        return node
    return Logical("&&", (_success(), node), node.offset)


def _success() -> Node:
    return Call("success", ())


def _format_call(template: Template) -> Node:
    """`format('literal {0} parts', expr0, ...)`: how GitHub reads a mixed template."""
    pieces: list[str] = []
    args: list[Node] = []
    for part in template.segments:
        if isinstance(part, str):
            pieces.append(part.replace("{", "{{").replace("}", "}}"))
        else:
            pieces.append(f"{{{len(args)}}}")
            args.append(part.node)
    return Call("format", (Literal("".join(pieces)), *args))


def _spans(text: str) -> Iterator[tuple[int, int]]:
    """(offset of each `${{`, offset of its closing `}}`), skipping `}}` inside strings."""
    pos = 0
    while (start := text.find(OPEN, pos)) >= 0:
        cursor = start + len(OPEN)
        while True:
            close = text.find(CLOSE, cursor)
            quote = text.find("'", cursor, close if close >= 0 else len(text))
            if quote < 0:
                break
            cursor = string_end(text, quote)
        if close < 0:
            raise ExpressionSyntaxError(f"unclosed '{OPEN}': no matching '{CLOSE}'", start)
        yield start, close
        pos = close + len(CLOSE)

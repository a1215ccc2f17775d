"""The built-in functions, as GitHub documents them.

Each takes the Environment and its already-evaluated arguments. `case` is not
here: it evaluates its arguments lazily, so the evaluator runs it itself.
The parser has already checked names and argument counts (KNOWN_FUNCTIONS).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from conveyor.errors import ExpressionError
from conveyor.expr.environment import Environment
from conveyor.expr.values import Kind, kind_of, loose_equal, number_to_string, to_string

Function = Callable[[Environment, Sequence[Any]], Any]

_CONTAINERS = (Kind.ARRAY, Kind.OBJECT)


def contains(_env: Environment, args: Sequence[Any]) -> bool:
    """`contains(search, item)`: an element loosely equal to item, or a substring (ignoring case)."""
    search, item = args
    kind = kind_of(search)
    if kind is Kind.ARRAY:
        return any(loose_equal(element, item) for element in search)
    if kind is Kind.OBJECT:
        return False
    return to_string(item).upper() in to_string(search).upper()


def starts_with(_env: Environment, args: Sequence[Any]) -> bool:
    """`startsWith(searchString, searchValue)`, ignoring case; false for arrays and objects."""
    text, prefix = args
    if kind_of(text) in _CONTAINERS or kind_of(prefix) in _CONTAINERS:
        return False
    return to_string(text).upper().startswith(to_string(prefix).upper())


def ends_with(_env: Environment, args: Sequence[Any]) -> bool:
    """`endsWith(searchString, searchValue)`, ignoring case; false for arrays and objects."""
    text, suffix = args
    if kind_of(text) in _CONTAINERS or kind_of(suffix) in _CONTAINERS:
        return False
    return to_string(text).upper().endswith(to_string(suffix).upper())


def format_(_env: Environment, args: Sequence[Any]) -> str:
    """`format(string, values...)`: `{N}` is the Nth value; `{{` and `}}` are literal braces."""
    template, values = to_string(args[0]), args[1:]
    out: list[str] = []
    pos, size = 0, len(template)
    while pos < size:
        brace = _next_brace(template, pos)
        out.append(template[pos:brace])
        if brace == size:
            break
        if template.startswith("{{", brace) or template.startswith("}}", brace):
            out.append(template[brace])
            pos = brace + 2
            continue
        close = template.find("}", brace) if template[brace] == "{" else -1
        digits = template[brace + 1 : close]
        if close < 0 or not (digits.isascii() and digits.isdigit()):
            raise ExpressionError(
                f"format(): invalid format string {template!r}: unmatched '{template[brace]}' "
                f"at position {brace} (write '{{{{' or '}}}}' for a literal brace)"
            )
        number = int(digits)
        if number >= len(values):
            raise ExpressionError(
                f"format(): the format string references {{{number}}} "
                f"but only {len(values)} argument(s) follow it"
            )
        out.append(to_string(values[number]))
        pos = close + 1
    return "".join(out)


def _next_brace(text: str, start: int) -> int:
    """The offset of the next '{' or '}' at or after `start`, or len(text)."""
    found = [i for i in (text.find("{", start), text.find("}", start)) if i >= 0]
    return min(found, default=len(text))


def join(_env: Environment, args: Sequence[Any]) -> str:
    """`join(array, separator=',')`: a non-array primitive is returned as a string."""
    target = args[0]
    separator = ","
    if len(args) > 1 and kind_of(args[1]) not in _CONTAINERS:
        separator = to_string(args[1])
    kind = kind_of(target)
    if kind is Kind.ARRAY:
        return separator.join(to_string(element) for element in target)
    if kind is Kind.OBJECT:
        return ""
    return to_string(target)


def to_json(_env: Environment, args: Sequence[Any]) -> str:
    """`toJSON(value)`: pretty-printed JSON with a two-space indent, as GitHub prints it."""
    try:
        return dump_json(args[0])
    except RecursionError:
        raise ExpressionError("toJSON(): the value nests too deeply to print") from None


def dump_json(value: Any, indent: str = "") -> str:
    """`value` as GitHub's pretty JSON: 2-space indent, `": "` after keys, integers without '.0'."""
    kind = kind_of(value)
    if kind is Kind.NULL:
        return "null"
    if kind is Kind.BOOLEAN:
        return "true" if value else "false"
    if kind is Kind.NUMBER:
        return number_to_string(value)
    if kind is Kind.STRING:
        return json.dumps(to_string(value), ensure_ascii=False)
    inner = indent + "  "
    if kind is Kind.ARRAY:
        if not value:
            return "[]"
        items = (inner + dump_json(element, inner) for element in value)
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    if not value:
        return "{}"
    members = (
        f"{inner}{json.dumps(to_string(key), ensure_ascii=False)}: {dump_json(item, inner)}"
        for key, item in value.items()
    )
    return "{\n" + ",\n".join(members) + "\n" + indent + "}"


def from_json(_env: Environment, args: Sequence[Any]) -> Any:
    """`fromJSON(text)`: the parsed value; empty or malformed text is an ExpressionError."""
    text = to_string(args[0])
    if not text.strip():
        raise ExpressionError("fromJSON(): empty input")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ExpressionError(f"fromJSON(): invalid JSON: {error}") from None
    except (ValueError, RecursionError) as error:
        raise ExpressionError(f"fromJSON(): cannot read the JSON: {error}") from None


def hash_files(env: Environment, args: Sequence[Any]) -> str:
    """`hashFiles(patterns...)`: delegated to the Environment's `hash_files`."""
    if env.hash_files is None:
        raise ExpressionError("hashFiles() is not available here")
    try:
        return env.hash_files([to_string(pattern) for pattern in args])
    except OSError as error:
        raise ExpressionError(f"hashFiles(): {error}") from None


def success(env: Environment, _args: Sequence[Any]) -> bool:
    """`success()`: nothing before has failed and the run is not cancelled."""
    return env.status == "success" and not env.cancelled


def failure(env: Environment, _args: Sequence[Any]) -> bool:
    """`failure()`: something before has failed."""
    return env.status == "failure"


def cancelled(env: Environment, _args: Sequence[Any]) -> bool:
    """`cancelled()`: the run was cancelled."""
    return env.cancelled


def always(_env: Environment, _args: Sequence[Any]) -> bool:
    """`always()`: true, whatever happened."""
    return True


FUNCTIONS: dict[str, Function] = {
    "contains": contains,
    "startsWith": starts_with,
    "endsWith": ends_with,
    "format": format_,
    "join": join,
    "toJSON": to_json,
    "fromJSON": from_json,
    "hashFiles": hash_files,
    "success": success,
    "failure": failure,
    "cancelled": cancelled,
    "always": always,
}
"""Implementations by canonical name (every KNOWN_FUNCTIONS entry but `case`)."""

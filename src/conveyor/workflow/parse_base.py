"""Shared helpers for turning YAML nodes into model values while collecting every problem.

Each helper checks one node against what the workflow syntax allows there,
reports a Diagnostic when it does not fit (and returns None or a default,
so that parsing goes on), and converts it to the model's plain value.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import TypeVar

from conveyor.errors import Diagnostic, Span
from conveyor.workflow.model import EMPTY, Raw, RunDefaults
from conveyor.workflow.yamlload import YMap, YNode, YScalar, YSeq, quoted, to_plain

T = TypeVar("T")


def describe(node: YNode | None) -> str:
    """The YAML type of a node, for messages: 'a string', 'a mapping', ..."""
    if node is None:
        return "nothing"
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a sequence"
    value = node.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string"


def is_expression(value: object) -> bool:
    """True for a string holding a `${{ }}` template, which GitHub evaluates at run time."""
    return isinstance(value, str) and "${{" in value


def as_text(node: YScalar) -> str:
    """A scalar as the string GitHub makes of it: numbers as written, booleans lowercased."""
    value = node.value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return node.text


def frozen(data: Mapping[str, T]) -> Mapping[str, T]:
    return MappingProxyType(dict(data)) if data else EMPTY


class ParseContext:
    """Collects the diagnostics of one file while its nodes are converted."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.diagnostics: list[Diagnostic] = []

    def report(self, span: Span, code: str, message: str) -> None:
        self.diagnostics.append(Diagnostic(span, code, message))

    def wrong_type(self, node: YNode, key: str, expected: str) -> None:
        self.report(node.span, "wrong-type", f"{key}: expected {expected}, got {describe(node)}")

    def missing(self, span: Span, key: str, where: str) -> None:
        self.report(span, "missing-key", f"{where} needs '{key}'")

    def check_keys(self, node: YMap, allowed: Collection[str], where: str) -> None:
        """Report each key of `node` not in `allowed`, naming the allowed ones."""
        for key, _ in node.items:
            if key.text in allowed:
                continue
            message = f"unknown key {quoted(key.text)} in {where}"
            import difflib  # only for a key that is wrong

            close = difflib.get_close_matches(key.text, list(allowed), n=1)
            if close:
                message += f" (did you mean '{close[0]}'?)"
            message += "; allowed: " + ", ".join(sorted(allowed))
            self.report(key.span, "unknown-key", message)

    def known(self, node: YMap, allowed: Collection[str], where: str) -> YMap:
        """`node` without the keys it may not hold (each reported), so they are not read."""
        self.check_keys(node, allowed, where)
        if all(key.text in allowed for key, _ in node.items):
            return node
        return YMap(tuple(pair for pair in node.items if pair[0].text in allowed), node.span)

    def mapping(
        self, node: YNode | None, key: str, allowed: Collection[str] | None = None, where: str = ""
    ) -> YMap | None:
        """`node` as a mapping (None when absent or null); with `allowed`, check its keys."""
        if node is None or (isinstance(node, YScalar) and node.value is None):
            return None
        if not isinstance(node, YMap):
            self.wrong_type(node, key, "a mapping")
            return None
        if allowed is not None:
            self.check_keys(node, allowed, where or f"'{key}'")
        return node

    def text(self, node: YNode | None, key: str, *, nullable: bool = True) -> str | None:
        """A scalar as a string (GitHub reads numbers and booleans as their text)."""
        if node is None or (nullable and isinstance(node, YScalar) and node.value is None):
            return None
        if isinstance(node, YScalar) and node.value is not None:
            return as_text(node)
        self.wrong_type(node, key, "a string")
        return None

    def string(self, node: YNode | None, key: str) -> str | None:
        """A scalar that must be written as a string."""
        if node is None:
            return None
        if isinstance(node, YScalar) and isinstance(node.value, str):
            return node.text
        self.wrong_type(node, key, "a string")
        return None

    def strings(self, node: YNode | None, key: str) -> tuple[str, ...] | None:
        """A string or a sequence of strings (as for `branches:` or `needs:`)."""
        if node is None:
            return None
        if isinstance(node, YScalar) and node.value is not None:
            return (as_text(node),)
        if not isinstance(node, YSeq):
            self.wrong_type(node, key, "a string or a sequence of strings")
            return None
        result = []
        for item in node.items:
            if isinstance(item, YScalar) and item.value is not None:
                result.append(as_text(item))
            else:
                self.wrong_type(item, key, "a string")
        return tuple(result)

    def flag(self, node: YNode | None, key: str, default: bool) -> bool | str:
        """A boolean, or an expression that yields one at run time."""
        if node is None:
            return default
        if isinstance(node, YScalar):
            if isinstance(node.value, bool):
                return node.value
            if is_expression(node.value):
                return node.text
        self.wrong_type(node, key, "a boolean or an expression")
        return default

    def number(self, node: YNode | None, key: str) -> float | str | None:
        """A positive number, or an expression that yields one at run time."""
        if node is None:
            return None
        if isinstance(node, YScalar):
            value = node.value
            if isinstance(value, int | float) and not isinstance(value, bool):
                if value > 0:
                    return value
                self.report(node.span, "wrong-type", f"{key}: must be greater than 0")
                return None
            if is_expression(value):
                return node.text
        self.wrong_type(node, key, "a number or an expression")
        return None

    def string_map(self, node: YNode | None, key: str) -> Mapping[str, str] | str:
        """`env:`-like data: a mapping of scalars (made strings), or one expression."""
        if isinstance(node, YScalar) and is_expression(node.value):
            return node.text
        if isinstance(node, YScalar) and node.value is not None:
            self.wrong_type(node, key, "a mapping or an expression")
            return EMPTY
        mapping = self.mapping(node, key)
        if mapping is None:
            return EMPTY
        result: dict[str, str] = {}
        for name, value in mapping.items:
            if isinstance(value, YScalar):
                result[name.text] = as_text(value)
            else:
                self.wrong_type(value, f"{key}.{name.text}", "a string")
        return frozen(result)

    def raw_map(self, node: YNode | None, key: str) -> Mapping[str, Raw]:
        """A mapping whose values stay plain data (as `with:` of a reusable workflow)."""
        mapping = self.mapping(node, key)
        if mapping is None:
            return EMPTY
        return frozen({name.text: to_plain(value) for name, value in mapping.items})

    def run_defaults(self, node: YNode | None, where: str) -> RunDefaults:
        """`defaults:` with its only key, `run:` (shell, working-directory)."""
        defaults = self.mapping(node, "defaults", ("run",), f"{where} defaults")
        if defaults is None:
            return RunDefaults()
        run = self.mapping(
            defaults.get("run"), "defaults.run", ("shell", "working-directory"), "defaults.run"
        )
        if run is None:
            return RunDefaults()
        return RunDefaults(
            shell=self.text(run.get("shell"), "shell"),
            working_directory=self.text(run.get("working-directory"), "working-directory"),
        )

"""Load YAML (1.2 core schema) into a tree whose every node knows its line and column.

PyYAML's event stream (libyaml when available) gives the positions; this
module builds the tree itself, iteratively, so that it can resolve scalars
by YAML 1.2 rules (`on`, `yes` and `no` stay strings) and refuse hostile
input before it costs anything: alias bombs, deep nesting, huge files,
duplicate or non-scalar keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import yaml

from conveyor.errors import Diagnostic, Span, WorkflowError

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64

Scalar = str | int | float | bool | None

_TAG = "tag:yaml.org,2002:"
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # the breaks PyYAML counts
_NULL = {"", "~", "null", "Null", "NULL"}
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+")
_OCT = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = {".nan", ".NaN", ".NAN"}


@dataclass(frozen=True)
class YScalar:
    """A scalar: `value` resolved by the core schema, `text` as written (quotes removed)."""

    value: Scalar
    text: str
    span: Span
    style: str = ""  # "" plain, "'" or '"' quoted, "|" literal, ">" folded
    content_col: int = 0  # where `text` starts on its line when offsets map exactly (0: unknown)

    def position(self, offset: int) -> Span:
        """The source position of character `offset` of `text`, exact where the style allows."""
        offset = max(0, min(offset, len(self.text)))
        if not self.content_col:
            return self.span
        if self.style == "|":
            before = self.text[:offset]
            line = self.span.line + 1 + before.count("\n")
            col = self.content_col + offset - (before.rfind("\n") + 1)
            return Span(self.span.file, line, col)
        return Span(self.span.file, self.span.line, self.content_col + offset)


@dataclass(frozen=True)
class YSeq:
    """A sequence, in file order."""

    items: tuple[YNode, ...]
    span: Span


@dataclass(frozen=True)
class YMap:
    """A mapping with scalar keys, in file order (the first of duplicate keys wins)."""

    items: tuple[tuple[YScalar, YNode], ...]
    span: Span
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for i, (key, _) in enumerate(self.items):
            self._index.setdefault(key.text, i)

    def get(self, key: str) -> YNode | None:
        i = self._index.get(key)
        return None if i is None else self.items[i][1]

    def key(self, key: str) -> YScalar | None:
        i = self._index.get(key)
        return None if i is None else self.items[i][0]

    def __contains__(self, key: str) -> bool:
        return key in self._index


YNode = YScalar | YSeq | YMap


def to_plain(node: YNode | None) -> object:
    """Plain Python data: dicts with string keys, lists, and resolved scalars."""
    if node is None:
        return None
    if isinstance(node, YScalar):
        return node.value
    if isinstance(node, YSeq):
        return [to_plain(item) for item in node.items]
    result: dict[str, object] = {}
    for key, value in node.items:
        if key.text not in result:  # the first of duplicate keys wins, as in YMap.get
            result[key.text] = to_plain(value)
    return result


def quoted(text: str, limit: int = 60) -> str:
    """`text` in quotes for a message, cut short when it is long (hostile files are)."""
    if len(text) > limit:
        text = text[:limit] + "…"
    return repr(text)


def resolve_plain(text: str) -> Scalar:
    """Resolve an untagged plain scalar by the YAML 1.2 core schema."""
    if text in _NULL:
        return None
    if text in _BOOL:
        return _BOOL[text]
    try:
        if _INT.fullmatch(text):
            return int(text)
        if _OCT.fullmatch(text):
            return int(text[2:], 8)
        if _HEX.fullmatch(text):
            return int(text[2:], 16)
    except ValueError:  # more digits than Python converts: keep the text
        return text
    if _FLOAT.fullmatch(text):
        return float(text)
    if _INF.fullmatch(text):
        return -math.inf if text.startswith("-") else math.inf
    if text in _NAN:
        return math.nan
    return text


def load_yaml(text: str, file: str) -> tuple[YNode | None, list[Diagnostic]]:
    """Parse one YAML document; None for an empty one.

    Returns the tree and the problems that do not stop reading (duplicate
    keys); raises WorkflowError for those that do (syntax, limits).
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        message = f"file is larger than {MAX_BYTES} bytes"
        raise WorkflowError([Diagnostic(Span(file, 1, 1), "yaml-limit", message)])
    builder = _Builder(file, _LINE_BREAK.split(text))
    try:
        for event in _events(text):
            builder.feed(event)
    except yaml.MarkedYAMLError as exc:
        raise WorkflowError([_syntax_error(exc, file)]) from None
    except yaml.reader.ReaderError as exc:
        span = _span_at_index(file, text, exc.position)
        found = text[exc.position : exc.position + 1]
        message = f"{exc.reason} (found {found!r})" if found else exc.reason
        raise WorkflowError([Diagnostic(span, "yaml-syntax", message)]) from None
    return builder.root, builder.problems


def _syntax_error(exc: yaml.MarkedYAMLError, file: str) -> Diagnostic:
    """PyYAML's problem at its position, with the construct it was reading and where that began."""
    mark, context = exc.problem_mark or exc.context_mark, exc.context_mark
    span = Span(file, mark.line + 1, mark.column + 1) if mark else Span(file, 1, 1)
    message = exc.problem or exc.context or "invalid YAML"
    if exc.problem and exc.context:
        where = f" at {context.line + 1}:{context.column + 1}" if context else ""
        message += f" ({exc.context}{where})"
    return Diagnostic(span, "yaml-syntax", message)


def _events(text: str) -> Iterator[yaml.Event]:
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    try:
        while loader.check_event():
            yield loader.get_event()
    finally:
        loader.dispose()


def _span_at_index(file: str, text: str, index: int) -> Span:
    before = text[:index]
    lines = _LINE_BREAK.split(before)
    return Span(file, len(lines), len(lines[-1]) + 1)


@dataclass
class _Frame:
    """A mapping or sequence still being read."""

    is_map: bool
    span: Span
    anchor: str | None
    items: list[YNode] = field(default_factory=list)
    keys: list[YScalar] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    size: int = 1
    height: int = 1


class _Builder:
    """Turns the event stream into YNodes, counting every node an alias expands to."""

    def __init__(self, file: str, lines: list[str]) -> None:
        self.file = file
        self.lines = lines
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[YNode, int, int]] = {}
        self.total = 0
        self.documents = 0
        self.root: YNode | None = None
        self.problems: list[Diagnostic] = []

    def fail(self, span: Span, code: str, message: str) -> WorkflowError:
        return WorkflowError([Diagnostic(span, code, message)])

    def span(self, event: yaml.Event) -> Span:
        mark = event.start_mark
        return (
            Span(self.file, 1, 1)
            if mark is None
            else Span(self.file, mark.line + 1, mark.column + 1)
        )

    def feed(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise self.fail(self.span(event), "yaml-syntax", "expected one YAML document")
        elif isinstance(event, yaml.ScalarEvent):
            self.attach(self.scalar(event), event.anchor, 1, 1)
        elif isinstance(event, yaml.AliasEvent):
            self.alias(event)
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            self.check_collection_tag(event)
            if len(self.stack) >= MAX_DEPTH:
                raise self.fail(self.span(event), "yaml-limit", f"nesting deeper than {MAX_DEPTH}")
            is_map = isinstance(event, yaml.MappingStartEvent)
            self.stack.append(_Frame(is_map, self.span(event), event.anchor))
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            frame = self.stack.pop()
            node: YNode
            if frame.is_map:
                pairs = tuple(zip(frame.keys, frame.items, strict=True))
                node = YMap(pairs, frame.span)
            else:
                node = YSeq(tuple(frame.items), frame.span)
            self.attach(node, frame.anchor, frame.size, frame.height)

    def alias(self, event: yaml.AliasEvent) -> None:
        span = self.span(event)
        if event.anchor not in self.anchors:
            if any(frame.anchor == event.anchor for frame in self.stack):
                raise self.fail(span, "yaml-limit", f"alias *{event.anchor} refers to itself")
            raise self.fail(span, "yaml-syntax", f"unknown alias *{event.anchor}")
        node, size, height = self.anchors[event.anchor]
        if len(self.stack) + height > MAX_DEPTH:
            raise self.fail(span, "yaml-limit", f"nesting deeper than {MAX_DEPTH}")
        self.attach(node, None, size, height)

    def attach(self, node: YNode, anchor: str | None, size: int, height: int) -> None:
        self.total += size
        if self.total > MAX_NODES:
            raise self.fail(
                node.span, "yaml-limit", f"document expands to more than {MAX_NODES} nodes"
            )
        if anchor is not None:
            self.anchors[anchor] = (node, size, height)
        if not self.stack:
            self.root = node
            return
        frame = self.stack[-1]
        frame.size += size
        frame.height = max(frame.height, height + 1)
        if not frame.is_map or len(frame.keys) > len(frame.items):
            frame.items.append(node)
            return
        if not isinstance(node, YScalar):
            raise self.fail(node.span, "yaml-syntax", "mapping keys must be scalars")
        if node.style == "" and node.text == "":
            raise self.fail(node.span, "yaml-syntax", "mapping key is empty")
        if node.text in frame.seen:
            self.problems.append(
                Diagnostic(node.span, "duplicate-key", f"duplicate key {quoted(node.text)}")
            )
        frame.seen.add(node.text)
        frame.keys.append(node)

    def check_collection_tag(self, event: yaml.CollectionStartEvent) -> None:
        expected = _TAG + ("map" if isinstance(event, yaml.MappingStartEvent) else "seq")
        if event.tag not in (None, "!", expected):
            raise self.fail(self.span(event), "yaml-syntax", f"unsupported tag {quoted(event.tag)}")

    def scalar(self, event: yaml.ScalarEvent) -> YScalar:
        span = self.span(event)
        style = event.style or ""
        text: str = event.value
        tag = event.tag
        value: Scalar
        if tag is None and style == "":
            value = resolve_plain(text)
        elif tag in (None, "!", _TAG + "str"):
            value = text
        elif tag in (_TAG + "null", _TAG + "bool", _TAG + "int", _TAG + "float"):
            value = resolve_plain(text)
            kind = tag.removeprefix(_TAG)
            if kind == "float" and _kind(value) == "int":
                value = float(text)
            elif _kind(value) != kind:
                raise self.fail(span, "yaml-syntax", f"{quoted(text)} is not a valid !!{kind}")
        else:
            raise self.fail(span, "yaml-syntax", f"unsupported tag {quoted(str(tag))}")
        return YScalar(value, text, span, style, self.content_col(event, style, text))

    def content_col(self, event: yaml.ScalarEvent, style: str, text: str) -> int:
        """Where the text starts, when offsets in it map straight onto source columns."""
        start, end = event.start_mark, event.end_mark
        if start is None or end is None or end.line >= len(self.lines):
            return 0
        if style == "|":
            indicator = self.lines[start.line][start.column : start.column + 3]
            if any(ch.isdigit() for ch in indicator):
                return 0  # explicit indentation: leave the position at the indicator
            for line in self.lines[start.line + 1 : end.line + 1]:
                if line.strip():
                    return len(line) - len(line.lstrip(" ")) + 1
            return 0
        if start.line != end.line or style == ">":
            return 0
        written = self.lines[start.line][start.column : end.column]
        if style == "" and written == text:
            return start.column + 1
        if style in ("'", '"') and written == style + text + style:
            return start.column + 2
        return 0


def _kind(value: Scalar) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return "float" if isinstance(value, float) else "str"

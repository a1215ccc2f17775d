"""The expression tree: immutable nodes that `parse` builds and `evaluate` reads.

Every node carries `offset`, the 0-based index of its first character in the
expression source. Offsets take no part in equality, so two trees that differ
only in spacing compare equal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

STATUS_FUNCTIONS = frozenset({"success", "failure", "always", "cancelled"})
"""The functions that look at the job's status; a condition calling one is not wrapped."""


@dataclass(frozen=True, slots=True)
class Literal:
    """`null`, `true`, `false`, a number or a single-quoted string."""

    value: bool | int | float | str | None
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ContextRef:
    """A bare name such as `github`: a context, looked up case-insensitively."""

    name: str
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Index:
    """`target.name` or `target[index]` (a property is an index by a string literal)."""

    target: Node
    index: Node
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Star:
    """`target.*` or `target[*]`: the object filter, an array of the elements or values."""

    target: Node
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    """`!operand`."""

    operand: Node
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Compare:
    """`left op right` with op one of `== != < <= > >=`."""

    op: str
    left: Node
    right: Node
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Logical:
    """`a && b && ...` or `a || b || ...`: a chain of one operator, kept flat."""

    op: str
    operands: tuple[Node, ...]
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    """`name(args...)`; `name` is the function's canonical spelling (e.g. `fromJSON`)."""

    name: str
    args: tuple[Node, ...] = ()
    offset: int = field(default=0, compare=False)


Node = Literal | ContextRef | Index | Star | Not | Compare | Logical | Call


def children(node: Node) -> tuple[Node, ...]:
    """The direct sub-expressions of `node`, left to right."""
    if isinstance(node, Index):
        return (node.target, node.index)
    if isinstance(node, Star):
        return (node.target,)
    if isinstance(node, Not):
        return (node.operand,)
    if isinstance(node, Compare):
        return (node.left, node.right)
    if isinstance(node, Logical):
        return node.operands
    if isinstance(node, Call):
        return node.args
    return ()


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(children(current)))


def is_status_call(node: Node) -> bool:
    """Whether the expression calls `success`, `failure`, `always` or `cancelled` anywhere.

    GitHub adds an implicit `success() &&` to an `if:` that calls none of them.
    """
    return any(isinstance(n, Call) and n.name in STATUS_FUNCTIONS for n in walk(node))


def context_names(node: Node) -> frozenset[str]:
    """The lower-cased context names the expression reads (for validation)."""
    return frozenset(n.name.lower() for n in walk(node) if isinstance(n, ContextRef))

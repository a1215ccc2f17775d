"""What every validation rule works on: the parsed model beside the positioned YAML tree.

A rule is a function `Document -> Iterable[Diagnostic]`; it reads the model
for meaning and the tree for positions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from conveyor.errors import Diagnostic
from conveyor.workflow.model import Action, Workflow
from conveyor.workflow.yamlload import YMap, YNode, YScalar, YSeq

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """One file under validation: its text, its tree and the model built from it."""

    path: str
    source: str
    tree: YNode
    model: Workflow | Action

    def node(self, *path: str | int) -> YNode | None:
        """The node at `path` (mapping keys and sequence indexes), or None."""
        node: YNode | None = self.tree
        for part in path:
            if isinstance(node, YMap) and isinstance(part, str):
                node = node.get(part)
            elif isinstance(node, YSeq) and isinstance(part, int) and part < len(node.items):
                node = node.items[part]
            else:
                return None
        return node

    def key(self, *path: str) -> YScalar | None:
        """The key scalar of the last element of `path`, or None."""
        parent = self.node(*path[:-1])
        return parent.key(path[-1]) if isinstance(parent, YMap) else None

    def step_paths(self) -> Iterator[tuple[Path, YMap]]:
        """Each step mapping with its path: under every job, or under `runs` of an action."""
        if isinstance(self.model, Action):
            yield from _steps(("runs", "steps"), self.node("runs", "steps"))
            return
        jobs = self.node("jobs")
        if isinstance(jobs, YMap):
            for key, job in jobs.items:
                if isinstance(job, YMap):
                    path = ("jobs", key.text, "steps")
                    yield from _steps(path, job.get("steps"))


def _steps(path: Path, node: YNode | None) -> Iterator[tuple[Path, YMap]]:
    if isinstance(node, YSeq):
        for index, item in enumerate(node.items):
            if isinstance(item, YMap):
                yield (*path, index), item


def walk_scalars(node: YNode) -> Iterator[tuple[Path, YScalar, bool]]:
    """Every scalar in file order with its path and whether it is a mapping key.

    A key has the same path as its value.
    """
    stack: list[tuple[Path, YNode, bool]] = [((), node, False)]
    while stack:
        path, current, is_key = stack.pop()
        if isinstance(current, YScalar):
            yield path, current, is_key
        elif isinstance(current, YSeq):
            items = list(enumerate(current.items))
            stack.extend(((*path, i), item, False) for i, item in reversed(items))
        else:
            for key, value in reversed(current.items):
                stack.append(((*path, key.text), value, False))
                stack.append(((*path, key.text), key, True))


Rule = Callable[[Document], Iterable[Diagnostic]]

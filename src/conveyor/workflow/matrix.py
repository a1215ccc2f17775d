"""Matrix expansion (`strategy.matrix`) by GitHub's documented algorithm, on evaluated data.

The engine renders `${{ }}` first; everything here works on plain data.

1. The cartesian product of the vectors (every key but `include`/`exclude`),
   in key order, the first key varying slowest.
2. `exclude`: an entry removes every combination that has all of its
   key:value pairs (a partial match is enough).
3. `include`, entry by entry: its pairs are added to each ORIGINAL
   combination whose original (vector) values it does not contradict; keys
   added by earlier entries may be overwritten. An entry added to no
   combination becomes a combination of its own, which later entries leave
   alone.

No matrix at all is `[]`: the caller runs the job once, with an empty
`matrix` context. A matrix that yields no combination is an error, as on GitHub.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.workflow.model import Strategy

MAX_COMBINATIONS = 256
"""GitHub's limit on the jobs one matrix may generate."""

MAX_PRODUCT = 4096
"""The largest cartesian product built before `exclude`: a bound on the work."""

_RESERVED = ("include", "exclude")


class MatrixError(ConveyorError, ValueError):
    """A matrix (or strategy) cannot be expanded; the message says which key and why."""


class MatrixTooLarge(MatrixError):
    """The matrix exceeds MAX_COMBINATIONS (or MAX_PRODUCT before exclude)."""


def expand(matrix: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every combination of an evaluated matrix, in GitHub's order; `[]` for no matrix."""
    if matrix is None:
        return []
    if not isinstance(matrix, Mapping):
        raise MatrixError(f"a matrix must be a mapping, not {_kind(matrix)}")
    if not matrix:
        return []
    vectors = _vectors(matrix)
    excludes = _entries(matrix, "exclude")
    includes = _entries(matrix, "include")
    for entry in excludes:
        for key in entry:
            if key not in vectors:
                raise MatrixError(f"matrix exclude key {key!r} is not a key of the matrix")

    size = math.prod(len(values) for values in vectors.values())
    if size > MAX_PRODUCT:
        raise MatrixTooLarge(
            f"the matrix has {size} combinations before exclude, more than {MAX_PRODUCT}"
        )
    keys = list(vectors)
    product = itertools.product(*vectors.values()) if vectors else ()
    originals = [dict(zip(keys, values, strict=True)) for values in product]
    originals = [c for c in originals if not any(_contains(c, e) for e in excludes)]
    _check_limit(len(originals))

    extra: list[dict[str, Any]] = []
    for entry in includes:
        fitting = [c for c in originals if _fits(c, entry, vectors)]
        for combination in fitting:
            combination.update(entry)
        if not fitting:
            extra.append(dict(entry))
            _check_limit(len(originals) + len(extra))

    combinations = originals + extra
    if not combinations:
        raise MatrixError("the matrix has no combinations left (every one was excluded)")
    # Combinations share the matrix's nested values; give each its own copy.
    return [copy.deepcopy(combination) for combination in combinations]


def count_static(matrix: Any) -> int | None:
    """How many jobs a matrix written without expressions yields; None if it holds `${{`.

    No matrix counts 0 (the job runs once, as itself). Raises MatrixError like `expand`.
    """
    if _has_expression(matrix):
        return None
    return len(expand(matrix))


def display_suffix(combination: Mapping[str, Any]) -> str:
    """GitHub's job-name suffix: the values in order, e.g. `(1, a)`; `""` for none.

    Nested objects and lists are flattened into their leaf values.
    """
    leaves: list[str] = []
    _flatten(list(combination.values()), leaves)
    return f"({', '.join(leaves)})" if leaves else ""


@dataclass(frozen=True)
class StrategyPlan:
    """How a matrix job's instances run: `fail_fast`, and at most `max_parallel` at once."""

    fail_fast: bool = True
    max_parallel: int | None = None

    @classmethod
    def from_strategy(cls, strategy: Strategy | None) -> StrategyPlan:
        """From a strategy whose `fail-fast` and `max-parallel` are already evaluated."""
        if strategy is None:
            return cls()
        return cls(_fail_fast(strategy.fail_fast), max_parallel(strategy.max_parallel))


def _check_limit(count: int) -> None:
    # Checked as soon as it is known, so a hostile include list stops early.
    if count > MAX_COMBINATIONS:
        raise MatrixTooLarge(f"the matrix has {count} combinations, more than {MAX_COMBINATIONS}")


def _vectors(matrix: Mapping[str, Any]) -> dict[str, list[Any]]:
    vectors: dict[str, list[Any]] = {}
    for key, values in matrix.items():
        if key in _RESERVED:
            continue
        if not isinstance(key, str):
            raise MatrixError(f"matrix key {key!r} must be a string")
        if not isinstance(values, list | tuple):
            raise MatrixError(f"matrix vector {key!r} must be a list, not {_kind(values)}")
        if not values:
            raise MatrixError(f"matrix vector {key!r} does not contain any values")
        vectors[key] = list(values)
    return vectors


def _entries(matrix: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    entries = matrix.get(name)
    if entries is None:
        return []
    if not isinstance(entries, list | tuple):
        raise MatrixError(f"matrix {name} must be a list of mappings, not {_kind(entries)}")
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise MatrixError(f"matrix {name}[{index}] must be a mapping, not {_kind(entry)}")
        for key in entry:
            if not isinstance(key, str):
                raise MatrixError(f"matrix {name}[{index}] key {key!r} must be a string")
    return list(entries)


def _contains(combination: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    return all(key in combination and _same(combination[key], v) for key, v in entry.items())


def _fits(
    combination: Mapping[str, Any], entry: Mapping[str, Any], vectors: Mapping[str, Any]
) -> bool:
    """Whether `entry` leaves every original (vector) value of `combination` as it is."""
    return all(key not in vectors or _same(combination[key], v) for key, v in entry.items())


def _same(a: Any, b: Any) -> bool:
    """Deep equality in which `true` is not `1`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _flatten(value: Any, leaves: list[str]) -> None:
    if isinstance(value, Mapping):
        _flatten(list(value.values()), leaves)
    elif isinstance(value, list | tuple):
        for item in value:
            _flatten(item, leaves)
    elif isinstance(value, bool):
        leaves.append("true" if value else "false")
    elif value is None:
        leaves.append("")
    elif isinstance(value, float) and value.is_integer():
        leaves.append(str(int(value)))
    else:
        leaves.append(str(value))


def _has_expression(value: Any) -> bool:
    if isinstance(value, str):
        return "${{" in value
    if isinstance(value, Mapping):
        return any(_has_expression(k) or _has_expression(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_expression(item) for item in value)
    return False


def _fail_fast(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise MatrixError(f"strategy fail-fast must be true or false, not {_show(value)}")


def max_parallel(value: Any) -> int | None:
    """An evaluated `max-parallel`: a whole number >= 1 (MatrixError otherwise), or None."""
    if value is None:
        return None
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise MatrixError(f"strategy max-parallel must be a number, not {_show(value)}")
    if not (math.isfinite(number) and number == int(number) and number >= 1):
        raise MatrixError(f"strategy max-parallel must be a whole number >= 1, not {_show(value)}")
    return int(number)


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__

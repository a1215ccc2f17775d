"""GitHub's filter patterns for branches, tags and paths, matched without backtracking.

The syntax is GitHub's "filter pattern cheat sheet":

- `*` matches zero or more characters except `/`;
- `**` matches zero or more of any character; as a whole leading segment
  (`**/` at the start or after `/`) it matches zero or more whole directories,
  so `**/README.md` matches `README.md` too;
- `?` makes the preceding character (or `[...]` set) optional, `+` repeats it
  one or more times;
- `[...]` matches one listed character; ranges may only span `a-z`, `A-Z` or
  `0-9`;
- `\\` escapes the next character; `!` at the very start negates the pattern.

A pattern compiles to a small NFA that is simulated with a lazily built DFA
(a cache of state-set transitions), so matching costs at most
O(len(pattern) * len(value)) whatever the pattern: no exponential blow-up on
inputs such as `*a*a*a*a*b` against a long run of `a`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from conveyor.errors import ConveyorError

MAX_PATTERN_LENGTH = 10_000
"""Longer patterns are refused: they are hostile, not filters."""

_CACHE_LIMIT = 4096  # transitions kept per pattern before the cache starts over
_RANGE_SPANS = (("0", "9"), ("a", "z"), ("A", "Z"))


class GlobError(ConveyorError, ValueError):
    """A filter pattern is malformed; the message names the pattern and the position."""


@dataclass(frozen=True)
class _CharSet:
    """The characters one step may consume: `chars`, or everything but `chars` when negated."""

    chars: frozenset[str]
    negated: bool = False

    def accepts(self, char: str) -> bool:
        return (char in self.chars) != self.negated


_ANY = _CharSet(frozenset(), negated=True)
_NOT_SLASH = _CharSet(frozenset("/"), negated=True)
_SLASH = _CharSet(frozenset("/"))
_INFINITE = -1


@dataclass(frozen=True)
class _Atom:
    """One character set repeated between `low` (0 or 1) and `high` (1 or infinite) times."""

    chars: _CharSet
    low: int = 1
    high: int = 1


@dataclass(frozen=True)
class _Directories:
    """A leading `**/`: zero or more whole directories, i.e. the regex `(.*/)?`."""


_Token = _Atom | _Directories
_State = tuple[tuple[tuple[_CharSet, int], ...], tuple[int, ...]]
"""An NFA state: its (character set, target) moves and its epsilon targets."""


class GlobPattern:
    """A compiled filter pattern; `negated` is True for a `!pattern`."""

    __slots__ = ("_cache", "_final", "_start", "_states", "negated", "pattern")

    def __init__(self, pattern: str, negated: bool, tokens: Sequence[_Token]) -> None:
        self.pattern = pattern
        self.negated = negated
        self._states = _build_nfa(tokens)
        self._final = len(self._states)
        self._start = self._closure((0,))
        self._cache: dict[tuple[frozenset[int], str], frozenset[int]] = {}

    def __repr__(self) -> str:
        return f"GlobPattern({self.pattern!r})"

    def match(self, value: str) -> bool:
        """Whether the whole of `value` matches (the `!` prefix is not applied here)."""
        current = self._start
        for char in value:
            current = self._step(current, char)
            if not current:
                return False
        return self._final in current

    def _step(self, current: frozenset[int], char: str) -> frozenset[int]:
        key = (current, char)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        targets = [
            target
            for state in current
            if state < self._final
            for chars, target in self._states[state][0]
            if chars.accepts(char)
        ]
        result = self._closure(targets)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = result
        return result

    def _closure(self, states: Iterable[int]) -> frozenset[int]:
        seen = set(states)
        stack = list(seen)
        while stack:
            state = stack.pop()
            if state == self._final:
                continue
            for target in self._states[state][1]:
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
        return frozenset(seen)


@lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> GlobPattern:
    """Compile one filter pattern; raise GlobError (a ValueError) when it is malformed."""
    if not pattern:
        raise GlobError("empty filter pattern")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise GlobError(f"filter pattern is longer than {MAX_PATTERN_LENGTH} characters")
    negated = pattern.startswith("!")
    start = 1 if negated else 0
    if start == len(pattern):
        raise GlobError("filter pattern '!' negates nothing")
    return GlobPattern(pattern, negated, _tokenize(pattern, start))


def match_filters(patterns: Sequence[str], value: str) -> bool:
    """Whether `value` is selected by an ordered filter list.

    Patterns are checked in order; a matching positive pattern selects the
    value and a matching `!` pattern deselects it, so later patterns override
    earlier ones. A value no pattern matches is not selected.
    """
    selected = False
    for text in patterns:
        glob = compile_glob(text)
        # Only a pattern that could change the verdict needs to be run.
        if selected == glob.negated and glob.match(value):
            selected = not glob.negated
    return selected


def any_match(patterns: Sequence[str], values: Iterable[str]) -> bool:
    """Whether at least one of `values` is selected by `patterns` (the `paths:` rule)."""
    return any(match_filters(patterns, value) for value in values)


def _tokenize(pattern: str, start: int) -> list[_Token]:
    tokens: list[_Token] = []
    i = start
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            i = _wildcard(pattern, i, tokens)
            continue
        if char in "?+":
            last = tokens[-1] if tokens else None
            if not isinstance(last, _Atom):
                raise GlobError(
                    f"{char!r} at position {i} of {pattern!r} has no preceding character"
                )
            # Quantifiers compose: `?` allows zero, `+` allows many.
            low = 0 if char == "?" else last.low
            high = _INFINITE if char == "+" else last.high
            tokens[-1] = _Atom(last.chars, low, high)
            i += 1
            continue
        if char == "[":
            chars, i = _bracket(pattern, i)
            tokens.append(_Atom(chars))
            continue
        if char == "\\":
            if i + 1 == len(pattern):
                raise GlobError(f"filter pattern {pattern!r} ends with an unescaped '\\'")
            char = pattern[i + 1]
            i += 1
        tokens.append(_Atom(_CharSet(frozenset(char))))
        i += 1
    return tokens


def _wildcard(pattern: str, i: int, tokens: list[_Token]) -> int:
    """Append the token for `*` or `**` starting at `i`; return the next position."""
    if not pattern.startswith("**", i):
        _append_repeat(tokens, _NOT_SLASH)
        return i + 1
    at_segment_start = not tokens or tokens[-1] in (_Atom(_SLASH), _Directories())
    after = pattern[i + 3 : i + 4]
    if at_segment_start and pattern.startswith("**/", i) and after not in ("?", "+"):
        tokens.append(_Directories())
        return i + 3
    _append_repeat(tokens, _ANY)
    return i + 2


def _append_repeat(tokens: list[_Token], chars: _CharSet) -> None:
    """Append `chars*`, merged into a directly preceding wildcard (`***` is `**`)."""
    last = tokens[-1] if tokens else None
    if isinstance(last, _Atom) and last.chars in (_ANY, _NOT_SLASH) and last.low == 0:
        # A wildcard is always `*`-like here: `?` and `+` leave it unbounded.
        widest = _ANY if _ANY in (last.chars, chars) else _NOT_SLASH
        tokens[-1] = _Atom(widest, 0, _INFINITE)
        return
    tokens.append(_Atom(chars, 0, _INFINITE))


def _bracket(pattern: str, i: int) -> tuple[_CharSet, int]:
    """Parse the `[...]` set opening at `i`; return it and the position after `]`."""
    opening = i
    members: list[str] = []
    i += 1
    while i < len(pattern) and pattern[i] != "]":
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            i += 1
            char = pattern[i]
        members.append(char)
        i += 1
    if i == len(pattern):
        raise GlobError(f"unclosed '[' at position {opening} of {pattern!r}")
    if not members:
        raise GlobError(f"empty '[]' at position {opening} of {pattern!r}")
    return _CharSet(frozenset(_expand_ranges(members, pattern, opening))), i + 1


def _expand_ranges(members: list[str], pattern: str, opening: int) -> set[str]:
    chars: set[str] = set()
    k = 0
    while k < len(members):
        # A '-' between two members is a range; at either end it is literal.
        if k + 2 < len(members) and members[k + 1] == "-":
            low, high = members[k], members[k + 2]
            if not any(a <= low <= high <= b for a, b in _RANGE_SPANS):
                raise GlobError(
                    f"invalid range '{low}-{high}' in the '[' at position {opening} of "
                    f"{pattern!r}: ranges can only span a-z, A-Z or 0-9"
                )
            chars.update(chr(code) for code in range(ord(low), ord(high) + 1))
            k += 3
        else:
            chars.add(members[k])
            k += 1
    return chars


def _build_nfa(tokens: Sequence[_Token]) -> list[_State]:
    """One state per step; state `len(states)` is the accepting one."""
    states: list[_State] = []
    for token in tokens:
        here = len(states)
        if isinstance(token, _Directories):
            # Loop on anything, then a '/', or skip both.
            states.append((((_ANY, here),), (here + 1, here + 2)))
            states.append((((_SLASH, here + 2),), ()))
            continue
        if token.low == 1:
            states.append((((token.chars, here + 1),), ()))
            here += 1
            if token.high == 1:
                continue
        if token.high == _INFINITE:
            states.append((((token.chars, here),), (here + 1,)))
        else:
            states.append((((token.chars, here + 1),), (here + 1,)))
    return states

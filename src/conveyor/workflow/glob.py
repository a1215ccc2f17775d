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

A pattern compiles to an NFA whose states are the bits of an integer; every
move goes to the same state or the next one, so one character costs a few
shifts and masks, and an epsilon closure O(log len(pattern)) more. Matching
is linear in the value whatever the pattern: no blow-up on `*a*a*a*a*b`
against a long run of `a`, which a backtracking regex would suffer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from conveyor.errors import ConveyorError

MAX_PATTERN_LENGTH = 10_000
"""Longer patterns are refused: they are hostile, not filters."""

_RANGE_SPANS = (("0", "9"), ("a", "z"), ("A", "Z"))


class GlobError(ConveyorError, ValueError):
    """A filter pattern is malformed; the message names the pattern and the position."""


@dataclass(frozen=True)
class _CharSet:
    """The characters one step may consume: `chars`, or everything but `chars` when negated.

    Only the two wildcards below are negated.
    """

    chars: frozenset[str]
    negated: bool = False


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


_DIRECTORIES = _Directories()
_Token = _Atom | _Directories


class GlobPattern:
    """A compiled filter pattern; `negated` is True for a `!pattern`."""

    __slots__ = ("_automaton", "negated", "pattern")

    def __init__(self, pattern: str, negated: bool, tokens: Sequence[_Token]) -> None:
        self.pattern = pattern
        self.negated = negated
        self._automaton = _Automaton(tokens)

    def __repr__(self) -> str:
        return f"GlobPattern({self.pattern!r})"

    def match(self, value: str) -> bool:
        """Whether the whole of `value` matches (the `!` prefix is not applied here)."""
        return self._automaton.match(value)


class _Automaton:
    """The NFA as bit masks: bit i is state i, bit `final` the accepting state.

    A state either advances to i + 1 or loops on i when its character set
    accepts the character. Epsilon moves all go to i + 1: always for `?` and
    `*`-like states, and for a `**/` state only right after a `/` (or before
    any character), which is how `(.*/)?` is said without a backward edge.
    """

    __slots__ = ("_advance", "_any", "_directories", "_epsilon", "_final", "_loop", "_not_slash")

    def __init__(self, tokens: Sequence[_Token]) -> None:
        self._advance: dict[str, int] = {}  # per listed character: states stepping on it
        self._loop: dict[str, int] = {}  # per listed character: states staying on it
        # Wildcards always loop: `?` and `+` leave `*` and `**` as they are.
        self._any = self._not_slash = 0
        self._epsilon = self._directories = 0
        states = _states(tokens)
        for state, (chars, loops, skippable) in enumerate(states):
            bit = 1 << state
            if isinstance(chars, _Directories):
                self._any |= bit
                self._directories |= bit
            elif chars == _ANY:
                self._any |= bit
            elif chars == _NOT_SLASH:
                self._not_slash |= bit
            else:
                table = self._loop if loops else self._advance
                for char in chars.chars:
                    table[char] = table.get(char, 0) | bit
            if skippable:
                self._epsilon |= bit
        self._final = 1 << len(states)

    def match(self, value: str) -> bool:
        current = self._closure(1, self._epsilon | self._directories)
        for char in value:
            advance = self._advance.get(char, 0)
            loop = self._loop.get(char, 0) | self._any
            epsilon = self._epsilon
            if char == "/":
                epsilon |= self._directories
            else:
                loop |= self._not_slash
            current = self._closure(((current & advance) << 1) | (current & loop), epsilon)
            if not current:
                return False
        return bool(current & self._final)

    @staticmethod
    def _closure(states: int, epsilon: int) -> int:
        """`states` plus every state reachable through runs of epsilon moves (each +1).

        Doubling: `jumps` holds the states from which 2**k epsilon steps in a
        row are possible, so a run of any length takes log2(length) rounds.
        """
        jumps, distance = epsilon, 1
        while states & jumps:
            states |= (states & jumps) << distance
            jumps &= jumps >> distance
            distance <<= 1
        return states


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
    last = tokens[-1] if tokens else None
    at_segment_start = last in (None, _Atom(_SLASH), _DIRECTORIES)
    quantified = pattern[i + 3 : i + 4] in ("?", "+")  # then they apply to the '/'
    if at_segment_start and pattern.startswith("**/", i) and not quantified:
        if last != _DIRECTORIES:  # `**/**/` is `**/`
            tokens.append(_DIRECTORIES)
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


def _states(tokens: Sequence[_Token]) -> list[tuple[_CharSet | _Directories, bool, bool]]:
    """One (characters, loops, skippable) triple per NFA state, in order.

    A `**/` state loops on anything; its skip is conditional, so not marked here.
    """
    states: list[tuple[_CharSet | _Directories, bool, bool]] = []
    for token in tokens:
        if isinstance(token, _Directories):
            states.append((token, True, False))
            continue
        if token.low == 1:
            states.append((token.chars, False, False))
            if token.high == 1:
                continue
        states.append((token.chars, token.high == _INFINITE, True))
    return states

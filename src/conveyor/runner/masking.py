"""Secret masking: replace every occurrence of a registered value with `***`.

`Masker` masks whole texts (log lines, summaries, annotations); `StreamMasker`
masks a stream cut into chunks at arbitrary places, holding back just enough
of each chunk's end that a secret split across two chunks is still caught.

Occurrences that overlap or touch are merged into one `***`, so a secret that
overlaps another never leaves a visible fragment. All values are matched with
one regular expression built from a prefix tree of the values (rebuilt lazily
after `add`), so thousands of secrets cost about as much as a few.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from itertools import groupby

MASK = "***"

# Deeper prefix-tree levels become a flat alternation, keeping the regex's
# nesting (and the recursion of re's parser) bounded for values like a, aa, aaa...
_MAX_NESTING = 32


class Masker:
    """The set of secret values of one job and the masking of text against it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._sorted: list[str] = []
        self._firsts: frozenset[str] = frozenset()
        self._longest = 0
        for secret in secrets:
            self.add(secret)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def longest(self) -> int:
        """Length of the longest registered value (0 when there is none)."""
        return self._longest

    def add(self, secret: str) -> None:
        """Register `secret`, and each non-blank line of it when it spans lines.

        Empty and whitespace-only values are ignored: masking them would blank
        the whole log. Lines are registered trimmed, as GitHub does, so a
        multi-line value printed line by line (or re-indented) is still hidden.
        """
        if not secret.strip():
            return
        candidates = [secret]
        if "\n" in secret or "\r" in secret:
            candidates += [line.strip() for line in re.split(r"\r\n|\r|\n", secret)]
        for value in candidates:
            if value and value not in self._values:
                self._values.add(value)
                self._pattern = None
                self._longest = max(self._longest, len(value))

    def mask(self, text: str) -> str:
        """`text` with every occurrence of every registered value replaced by `***`."""
        if not self._values or not text:
            return text
        return _replace(text, self.spans(text))

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Sorted, disjoint `[start, end)` ranges of `text` covered by registered values.

        Overlapping and adjacent occurrences are merged into one range.
        """
        pattern = self._compiled()
        if pattern is None:
            return []
        spans: list[tuple[int, int]] = []
        match = pattern.search(text)
        while match is not None:
            start, end = match.span()
            # Another value may start inside this one and reach further.
            match = pattern.search(text, start + 1)
            while match is not None and match.start() <= end:
                end = max(end, match.end())
                match = pattern.search(text, match.start() + 1)
            spans.append((start, end))
        return spans

    def partial_start(self, text: str) -> int:
        """Where the longest suffix of `text` that could begin a secret starts.

        That is the smallest `i` such that `text[i:]` is a proper prefix of a
        registered value; `len(text)` when no suffix is.
        """
        if self._pattern is None:
            self._compiled()
        values, firsts = self._sorted, self._firsts
        n = len(text)
        for i in range(max(0, n - self._longest + 1), n):
            if text[i] not in firsts:
                continue
            tail = text[i:]
            # Values that extend `tail` sort right after it, if there are any.
            j = bisect.bisect_right(values, tail)
            if j < len(values) and values[j].startswith(tail):
                return i
        return n

    def _compiled(self) -> re.Pattern[str] | None:
        if self._pattern is None and self._values:
            self._sorted = sorted(self._values)
            self._firsts = frozenset(value[0] for value in self._values)
            self._pattern = re.compile(_alternation(self._sorted, 0))
        return self._pattern


class StreamMasker:
    """Masks a text stream delivered in chunks cut at arbitrary places.

    `feed` returns what can be shown now; it keeps back the shortest tail that
    might still grow into a secret (at most one secret's length, plus a
    secret-sized match that such a tail overlaps). `flush` returns the rest.
    Secrets added to the `Masker` meanwhile apply to the held-back text too.
    """

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._pending = ""

    def feed(self, chunk: str) -> str:
        """Masked text that is safe to emit now."""
        text = self._pending + chunk
        if not len(self._masker):
            self._pending = ""
            return text
        spans = self._masker.spans(text)
        cut = self._masker.partial_start(text)
        for start, end in spans:
            if start < cut < end:
                # A final match that reaches into the tail may merge with a
                # secret completed by the next chunk: keep it whole.
                cut = start
                break
        self._pending = text[cut:]
        return _replace(text[:cut], [(a, b) for a, b in spans if b <= cut])

    def flush(self) -> str:
        """Everything still held back, masked; the stream starts afresh."""
        text, self._pending = self._pending, ""
        return self._masker.mask(text)


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return text
    parts: list[str] = []
    position = 0
    for start, end in spans:
        parts.append(text[position:start])
        parts.append(MASK)
        position = end
    parts.append(text[position:])
    return "".join(parts)


def _alternation(words: list[str], depth: int) -> str:
    """A regex matching, at one position, the longest of the sorted `words`.

    Words sharing a first character share one branch headed by their common
    prefix (a radix tree), so the regex engine follows one branch per
    character instead of trying every word. An empty word (the end of a
    shorter value) makes the rest optional; greedy `?` still prefers longer.
    """
    optional = words[0] == ""
    rest = words[1:] if optional else words
    if depth >= _MAX_NESTING:
        body = "|".join(re.escape(w) for w in sorted(rest, key=len, reverse=True))
    else:
        branches = []
        for _, group in groupby(rest, key=lambda w: w[0]):
            members = list(group)
            prefix = _common_prefix(members[0], members[-1])
            tails = [w[len(prefix) :] for w in members]
            branch = re.escape(prefix)
            if tails != [""]:
                branch += "(?:" + _alternation(tails, depth + 1) + ")"
            branches.append(branch)
        body = "|".join(branches)
    return f"(?:{body})?" if optional else body


def _common_prefix(first: str, last: str) -> str:
    """The prefix shared by every word of a sorted group: that of its first and last."""
    size = min(len(first), len(last))
    i = 0
    while i < size and first[i] == last[i]:
        i += 1
    return first[:i]

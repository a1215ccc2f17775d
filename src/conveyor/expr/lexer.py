"""Turns expression source into tokens, each with its offset, line and column.

Two places depend on the token before: a `.` is the property operator after
something that has properties (a name, `)`, `]`, a literal, `*`) and the
start of a number such as `.5` elsewhere; and the word after a `.` is always
a property name, so `foo.null` and `foo.true` name properties.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from conveyor.errors import ExpressionSyntaxError
from conveyor.expr.values import parse_number


class TokenKind(Enum):
    NUMBER = "number"
    STRING = "string"
    TRUE = "true"
    FALSE = "false"
    NULL = "null"
    IDENT = "name"
    DOT = "'.'"
    STAR = "'*'"
    LBRACKET = "'['"
    RBRACKET = "']'"
    LPAREN = "'('"
    RPAREN = "')'"
    COMMA = "','"
    NOT = "'!'"
    LT = "'<'"
    LE = "'<='"
    GT = "'>'"
    GE = "'>='"
    EQ = "'=='"
    NE = "'!='"
    AND = "'&&'"
    OR = "'||'"
    EOF = "end of expression"


@dataclass(frozen=True, slots=True)
class Token:
    """One token; `line` and `column` are 1-based, `offset` 0-based."""

    kind: TokenKind
    text: str
    offset: int
    line: int
    column: int
    value: bool | int | float | str | None = None


_KEYWORDS: dict[str, tuple[TokenKind, bool | int | float | str | None]] = {
    "true": (TokenKind.TRUE, True),
    "false": (TokenKind.FALSE, False),
    "null": (TokenKind.NULL, None),
    "NaN": (TokenKind.NUMBER, float("nan")),
    "Infinity": (TokenKind.NUMBER, float("inf")),
}

_OPERATORS: dict[str, TokenKind] = {
    "<=": TokenKind.LE,
    ">=": TokenKind.GE,
    "==": TokenKind.EQ,
    "!=": TokenKind.NE,
    "&&": TokenKind.AND,
    "||": TokenKind.OR,
    "<": TokenKind.LT,
    ">": TokenKind.GT,
    "!": TokenKind.NOT,
    "(": TokenKind.LPAREN,
    ")": TokenKind.RPAREN,
    "[": TokenKind.LBRACKET,
    "]": TokenKind.RBRACKET,
    ",": TokenKind.COMMA,
    "*": TokenKind.STAR,
    ".": TokenKind.DOT,
}

_HAS_PROPERTIES = frozenset(
    {
        TokenKind.IDENT,
        TokenKind.RPAREN,
        TokenKind.RBRACKET,
        TokenKind.STAR,
        TokenKind.STRING,
        TokenKind.NUMBER,
        TokenKind.TRUE,
        TokenKind.FALSE,
        TokenKind.NULL,
    }
)

_HINTS = {
    "=": "'=' is not an operator; use '=='",
    "&": "'&' is not an operator; use '&&'",
    "|": "'|' is not an operator; use '||'",
    '"': "strings use single quotes ('...'), not double quotes",
}

_WHITESPACE = " \t\r\n\f\v"
_WORD_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_WORD_CHARS = _WORD_START | frozenset("0123456789-")
_NUMBER_CHARS = _WORD_CHARS | frozenset(".+")
_NUMBER_START = frozenset("0123456789+-.")


def tokenize(source: str) -> list[Token]:
    """All tokens of `source`, ending with an EOF token at offset len(source)."""
    tokens: list[Token] = []
    pos, line, line_start, size = 0, 1, 0, len(source)
    previous: TokenKind | None = None
    while True:
        while pos < size and source[pos] in _WHITESPACE:
            if source[pos] == "\n":
                line, line_start = line + 1, pos + 1
            pos += 1
        if pos >= size:
            tokens.append(Token(TokenKind.EOF, "", size, line, pos - line_start + 1))
            return tokens
        start, char = pos, source[pos]
        column = start - line_start + 1
        if previous is TokenKind.DOT and char in _WORD_START:
            end = _scan(source, start, _WORD_CHARS)
            token = Token(TokenKind.IDENT, source[start:end], start, line, column)
        elif char in _WORD_START:
            end = _scan(source, start, _WORD_CHARS)
            text = source[start:end]
            kind, value = _KEYWORDS.get(text, (TokenKind.IDENT, None))
            token = Token(kind, text, start, line, column, value)
        elif char == "'":
            end, value = _read_string(source, start)
            token = Token(TokenKind.STRING, source[start:end], start, line, column, value)
            newlines = source.count("\n", start, end)
            if newlines:
                line, line_start = line + newlines, source.rindex("\n", start, end) + 1
        elif char in _NUMBER_START and not (char == "." and previous in _HAS_PROPERTIES):
            end = _scan(source, start, _NUMBER_CHARS)
            text = source[start:end]
            number = parse_number(text)
            if number is None:
                raise ExpressionSyntaxError(f"invalid number '{text}'", start)
            token = Token(TokenKind.NUMBER, text, start, line, column, number)
        else:
            two = source[start : start + 2]
            if two in _OPERATORS:
                text = two
            elif char in _OPERATORS:
                text = char
            else:
                hint = _HINTS.get(char, f"unexpected character '{char}'")
                raise ExpressionSyntaxError(hint, start)
            end = start + len(text)
            token = Token(_OPERATORS[text], text, start, line, column)
        tokens.append(token)
        previous, pos = token.kind, end


def _scan(source: str, pos: int, allowed: frozenset[str]) -> int:
    """The end of the run of `allowed` characters starting at `pos`."""
    size = len(source)
    pos += 1
    while pos < size and source[pos] in allowed:
        pos += 1
    return pos


def _read_string(source: str, start: int) -> tuple[int, str]:
    """A single-quoted string starting at `start`: (end offset, value); '' is a quote."""
    parts: list[str] = []
    pos = start + 1
    while True:
        close = source.find("'", pos)
        if close < 0:
            raise ExpressionSyntaxError("unterminated string: missing closing quote", start)
        parts.append(source[pos:close])
        if source.startswith("''", close):
            parts.append("'")
            pos = close + 2
        else:
            return close + 1, "".join(parts)


def string_end(source: str, start: int) -> int:
    """The offset just past the string literal that opens at `start` (raises if unclosed)."""
    return _read_string(source, start)[0]

"""The lexer: token kinds, literal values, positions and lexical errors."""

import math

import pytest

from conveyor.errors import ExpressionSyntaxError
from conveyor.expr.lexer import TokenKind, tokenize

K = TokenKind


def kinds(source: str) -> list[TokenKind]:
    return [token.kind for token in tokenize(source)][:-1]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a == b", [K.IDENT, K.EQ, K.IDENT]),
        ("a != b", [K.IDENT, K.NE, K.IDENT]),
        (
            "a < b <= c > d >= e",
            [K.IDENT, K.LT, K.IDENT, K.LE, K.IDENT, K.GT, K.IDENT, K.GE, K.IDENT],
        ),
        ("a && b || !c", [K.IDENT, K.AND, K.IDENT, K.OR, K.NOT, K.IDENT]),
        ("f(a, b)", [K.IDENT, K.LPAREN, K.IDENT, K.COMMA, K.IDENT, K.RPAREN]),
        ("a[0]", [K.IDENT, K.LBRACKET, K.NUMBER, K.RBRACKET]),
        ("a.*.b", [K.IDENT, K.DOT, K.STAR, K.DOT, K.IDENT]),
        ("a[*]", [K.IDENT, K.LBRACKET, K.STAR, K.RBRACKET]),
        ("true false null", [K.TRUE, K.FALSE, K.NULL]),
        ("NaN Infinity", [K.NUMBER, K.NUMBER]),
        ("'s'", [K.STRING]),
        ("!!a", [K.NOT, K.NOT, K.IDENT]),
        ("a.b.c", [K.IDENT, K.DOT, K.IDENT, K.DOT, K.IDENT]),
        ("(a).b", [K.LPAREN, K.IDENT, K.RPAREN, K.DOT, K.IDENT]),
        ("a[0].b", [K.IDENT, K.LBRACKET, K.NUMBER, K.RBRACKET, K.DOT, K.IDENT]),
        ("'x'.length", [K.STRING, K.DOT, K.IDENT]),
        ("", []),
        ("   \n\t ", []),
    ],
)
def test_token_kinds(source: str, expected: list[TokenKind]) -> None:
    assert kinds(source) == expected


@pytest.mark.parametrize(
    "source",
    ["steps.my-step.outputs", "needs.job-1.result", "env.MY_VAR", "a_b-c.d_e-f", "_x"],
)
def test_names_hold_dashes_and_underscores(source: str) -> None:
    texts = [token.text for token in tokenize(source) if token.kind is K.IDENT]
    assert texts == source.split(".")


@pytest.mark.parametrize("word", ["true", "false", "null", "NaN", "Infinity", "format", "x"])
def test_word_after_dot_is_always_a_name(word: str) -> None:
    tokens = tokenize(f"foo.{word}")
    assert tokens[2].kind is K.IDENT
    assert tokens[2].text == word


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("0", 0),
        ("1", 1),
        ("711", 711),
        ("-2", -2),
        ("+1", 1),
        ("1.5", 1.5),
        ("1.50", 1.5),
        ("-9.2", -9.2),
        (".5", 0.5),
        ("-.5", -0.5),
        ("5.", 5.0),
        ("0x1F", 31),
        ("0xff", 255),
        ("0XFF", 255),
        ("0o10", 8),
        ("0b101", 5),
        ("2e3", 2000.0),
        ("1.2E+2", 120.0),
        ("-2.99e-2", -0.0299),
        ("Infinity", math.inf),
        ("-Infinity", -math.inf),
        ("+Infinity", math.inf),
        ("123456789012345678901", 123456789012345678901.0),
    ],
)
def test_number_values(source: str, value: float) -> None:
    (token, _eof) = tokenize(source)
    assert token.kind is K.NUMBER
    assert token.value == value


def test_nan_literal() -> None:
    value = tokenize("NaN")[0].value
    assert isinstance(value, float)
    assert math.isnan(value)


def test_whole_numbers_stay_ints() -> None:
    assert type(tokenize("42")[0].value) is int
    assert type(tokenize("0x10")[0].value) is int
    assert type(tokenize("4.0")[0].value) is float


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("''", ""),
        ("'abc'", "abc"),
        ("'It''s open source!'", "It's open source!"),
        ("''''", "'"),
        ("'a''''b'", "a''b"),
        ("'}}'", "}}"),
        ("'${{ x }}'", "${{ x }}"),
        ("'line1\nline2'", "line1\nline2"),
        ("'\"double\"'", '"double"'),
    ],
)
def test_string_values(source: str, value: str) -> None:
    token = tokenize(source)[0]
    assert token.kind is K.STRING
    assert token.value == value
    assert token.text == source


def test_dot_starts_a_number_where_no_property_can_follow() -> None:
    assert [t.kind for t in tokenize("f(.5)")][:3] == [K.IDENT, K.LPAREN, K.NUMBER]
    assert tokenize("a == .5")[2].value == 0.5
    assert tokenize("a.b")[1].kind is K.DOT


def test_positions_count_lines_and_columns() -> None:
    tokens = tokenize("a &&\n  b ||\n'x\ny' == c")
    positions = [(t.text, t.offset, t.line, t.column) for t in tokens]
    assert positions == [
        ("a", 0, 1, 1),
        ("&&", 2, 1, 3),
        ("b", 7, 2, 3),
        ("||", 9, 2, 5),
        ("'x\ny'", 12, 3, 1),
        ("==", 18, 4, 4),
        ("c", 21, 4, 7),
        ("", 22, 4, 8),
    ]


def test_eof_token_sits_at_the_end() -> None:
    eof = tokenize("abc  ")[-1]
    assert eof.kind is K.EOF
    assert eof.offset == 5


@pytest.mark.parametrize(
    ("source", "fragment", "offset"),
    [
        ("'abc", "unterminated string", 0),
        ("a == 'it''s", "unterminated string", 5),
        ('"abc"', "single quotes", 0),
        ("a = b", "use '=='", 2),
        ("a & b", "use '&&'", 2),
        ("a | b", "use '||'", 2),
        ("a @ b", "unexpected character '@'", 2),
        ("foo.b@r", "unexpected character '@'", 5),
        ("$x", "unexpected character '$'", 0),
        ("1x", "invalid number '1x'", 0),
        ("1.2.3", "invalid number '1.2.3'", 0),
        ("- 2", "invalid number '-'", 0),
        ("a == -", "invalid number '-'", 5),
        ("0xZZ", "invalid number", 0),
        ("1e", "invalid number", 0),
        ("a # comment", "unexpected character '#'", 2),
        ("a ; b", "unexpected character ';'", 2),
        ("{}", "unexpected character '{'", 0),
    ],
)
def test_lexical_errors(source: str, fragment: str, offset: int) -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        tokenize(source)
    assert fragment in caught.value.message
    assert caught.value.offset == offset

"""Properties that hold for any input: no crash but typed errors, and coercion laws."""

import contextlib
import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.errors import ExpressionError, ExpressionSyntaxError
from conveyor.expr import (
    Environment,
    condition,
    evaluate,
    iter_expressions,
    parse,
    parse_template,
    render,
    to_boolean,
    to_number,
    to_string,
)
from conveyor.expr.functions import dump_json
from conveyor.expr.lexer import tokenize
from conveyor.expr.values import loose_equal, order

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

NAMES = ["github", "env", "matrix", "steps", "needs", "a", "b-c", "x_1"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats()
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from([*NAMES, "n", "N", "0", "k"]) | st.text(max_size=4), inner, max_size=4
        )
    ),
    max_leaves=20,
)
contexts = st.dictionaries(st.sampled_from(NAMES), json_values, max_size=5)

# Fragments from which token soups are built: most are valid tokens, some are not.
FRAGMENTS = [
    *NAMES,
    ".",
    ".*",
    "[*]",
    "[",
    "]",
    "(",
    ")",
    ",",
    "!",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "null",
    "true",
    "false",
    "0",
    "-1.5",
    "0x1F",
    "2e3",
    "NaN",
    "Infinity",
    "''",
    "'abc'",
    "'{0}'",
    "'{{'",
    "'[1,{\"n\":2}]'",
    "'{\"n\":[1]}'",
    "contains(",
    "startsWith(",
    "endsWith(",
    "format(",
    "join(",
    "toJSON(",
    "fromJSON(",
    "case(",
    "success()",
    "failure()",
    "always()",
    "cancelled()",
    "hashFiles(",
]
token_soup = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=14).map(" ".join)


def atoms() -> st.SearchStrategy[str]:
    literal = st.sampled_from(
        ["null", "true", "false", "0", "1", "-2", "1.5", "0xff", "NaN", "''", "'a'", "'10'"]
    )
    path = st.lists(st.sampled_from(["n", "N", "k", "0", "*"]), max_size=3).flatmap(
        lambda parts: st.sampled_from(NAMES).map(
            lambda name: (
                name
                + "".join(".*" if p == "*" else f"['{p}']" if p == "0" else f".{p}" for p in parts)
            )
        )
    )
    return literal | path


def compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(
        inner, st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "&&", "||"]), inner
    ).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
    unary = inner.map(lambda e: f"!{e}")
    indexed = st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}]")
    one_arg = st.tuples(st.sampled_from(["toJSON", "fromJSON", "join"]), inner).map(
        lambda t: f"{t[0]}({t[1]})"
    )
    two_args = st.tuples(
        st.sampled_from(["contains", "startsWith", "endsWith", "join", "format"]), inner, inner
    ).map(lambda t: f"{t[0]}({t[1]}, {t[2]})")
    case = st.tuples(inner, inner, inner).map(lambda t: f"case({t[0]}, {t[1]}, {t[2]})")
    return binary | unary | indexed | one_arg | two_args | case


valid_expressions = st.recursive(atoms(), compound, max_leaves=8)


def check_offset(error: ExpressionSyntaxError, text: str) -> None:
    assert 0 <= error.offset <= len(text), (error, text)


@SETTINGS
@given(st.text())
def test_any_text_lexes_parses_or_fails_with_a_syntax_error(text: str) -> None:
    for attempt in (
        tokenize,
        parse,
        parse_template,
        condition,
        lambda t: list(iter_expressions(t)),
    ):
        try:
            attempt(text)
        except ExpressionSyntaxError as error:
            check_offset(error, text)


@SETTINGS
@given(token_soup)
def test_any_token_soup_parses_or_fails_with_a_syntax_error(source: str) -> None:
    try:
        parse(source)
    except ExpressionSyntaxError as error:
        check_offset(error, source)


@SETTINGS
@given(
    st.lists(
        st.sampled_from(["${{", "}}", "'", "''", " ", "a", "x.y", "{", "}", "$"]) | token_soup,
        max_size=10,
    ).map("".join)
)
def test_any_template_text_parses_or_fails_with_a_syntax_error(text: str) -> None:
    try:
        parse_template(text)
    except ExpressionSyntaxError as error:
        check_offset(error, text)


@SETTINGS
@given(token_soup, contexts)
def test_evaluating_any_parsed_soup_raises_at_most_an_expression_error(
    source: str, ctx: dict[str, Any]
) -> None:
    try:
        node = parse(source)
    except ExpressionSyntaxError:
        return
    with contextlib.suppress(ExpressionError):
        evaluate(node, Environment(ctx))


@SETTINGS
@given(valid_expressions, contexts)
def test_generated_expressions_parse_and_evaluate(source: str, ctx: dict[str, Any]) -> None:
    node = parse(source)
    env = Environment(ctx)
    try:
        value = evaluate(node, env)
    except ExpressionError:
        return
    assert evaluate(parse(f"!({source})"), env) is (not to_boolean(value))
    assert isinstance(to_string(value), str)
    lone = render(parse_template(f"${{{{ {source} }}}}"), env)
    assert to_string(lone) == to_string(value)


@SETTINGS
@given(valid_expressions, contexts)
def test_templates_interpolate_the_string_of_the_value(source: str, ctx: dict[str, Any]) -> None:
    env = Environment(ctx)
    try:
        value = evaluate(parse(source), env)
    except ExpressionError:
        return
    assert render(parse_template(f"<${{{{ {source} }}}}>"), env) == f"<{to_string(value)}>"


@SETTINGS
@given(json_values, json_values)
def test_loose_equality_is_symmetric(left: Any, right: Any) -> None:
    assert loose_equal(left, right) is loose_equal(right, left)
    assert order("<", left, right) is order(">", right, left)
    assert order("<=", left, right) is order(">=", right, left)


@SETTINGS
@given(json_values)
def test_every_value_has_a_truthiness_a_number_and_a_string(value: Any) -> None:
    assert isinstance(to_boolean(value), bool)
    assert isinstance(to_number(value), int | float)
    assert isinstance(to_string(value), str)


@SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_print_to_fifteen_significant_digits(number: float) -> None:
    text = to_string(number)
    assert not text.endswith(".0")
    assert math.isclose(float(text), number, rel_tol=1e-14, abs_tol=0.0)
    assert to_number(text) == float(text)


@SETTINGS
@given(st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1))
def test_integers_print_exactly(number: int) -> None:
    assert to_string(number) == str(number)
    assert to_string(float(number)) == str(number)


json_without_floats = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@SETTINGS
@given(json_without_floats)
def test_to_json_is_json_with_two_space_indent(value: Any) -> None:
    text = dump_json(value)
    assert text == json.dumps(value, indent=2, ensure_ascii=False)
    env = Environment({"v": value})
    assert evaluate(parse("fromJSON(toJSON(v))"), env) == value

"""Templates (`${{ }}` in text), rendering nested data, and `if:` conditions."""

from typing import Any

import pytest

from conveyor.errors import ExpressionSyntaxError
from conveyor.expr import (
    Call,
    ContextRef,
    Environment,
    Expression,
    Literal,
    Logical,
    Node,
    condition,
    evaluate,
    is_status_call,
    iter_expressions,
    parse,
    parse_template,
    render,
    render_value,
)

ENV = Environment(
    {
        "github": {"event_name": "push", "ref": "refs/heads/main", "event": {}},
        "env": {"GREETING": "Hello", "EMPTY": ""},
        "matrix": {"os": "linux", "node": 18},
        "needs": {"prepare": {"outputs": {"matrix": '{"os": ["a", "b"]}', "n": "3"}}},
    }
)


def run(text: str, env: Environment = ENV) -> Any:
    return render(parse_template(text), env)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("", ""),
        ("$ { { not an expression } }", "$ { { not an expression } }"),
        ("{{ curly }}", "{{ curly }}"),
        ("${ github.ref }", "${ github.ref }"),
        ("${{ github.event_name }}", "push"),
        ("${{github.event_name}}", "push"),
        ("on ${{ github.event_name }}!", "on push!"),
        ("${{ matrix.os }}-${{ matrix.node }}", "linux-18"),
        ("${{ matrix.node }}${{ matrix.node }}", "1818"),
        ("[${{ null }}]", "[]"),
        ("x=${{ true }}", "x=true"),
        (
            "num=${{ 1.50 }} neg=${{ -2 }} hex=${{ 0x1F }} exp=${{ 2e3 }}",
            "num=1.5 neg=-2 hex=31 exp=2000",
        ),
        ("a ${{ fromJSON('[1]') }} o ${{ fromJSON('{}') }}", "a Array o Object"),
        ("${{ format('{{0}}', 1) }}!", "{0}!"),
        ("${{ '}}' }}", "}}"),
        ("${{ '${{ x }}' }}", "${{ x }}"),
        ("${{ 'it''s' }} ok", "it's ok"),
        ("${{ github.event_name }}}", "push}"),
        ("${{ env.GREETING }} ${{ env.EMPTY }}end", "Hello end"),
        ("line1\n${{ matrix.os }}\nline3", "line1\nlinux\nline3"),
        ("${{\n  matrix.os\n}}", "linux"),
    ],
)
def test_render(text: str, expected: Any) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ fromJSON(needs.prepare.outputs.matrix) }}", {"os": ["a", "b"]}),
        ("${{ fromJSON(needs.prepare.outputs.n) }}", 3),
        ("${{ 1 }}", 1),
        ("${{ true }}", True),
        ("${{ null }}", None),
        ("${{ matrix }}", {"os": "linux", "node": 18}),
        ("${{ fromJSON('[1,2]').* }}", [1, 2]),
    ],
)
def test_a_lone_expression_renders_its_raw_value(text: str, expected: Any) -> None:
    assert run(text) == expected


@pytest.mark.parametrize(
    "text",
    [" ${{ 1 }}", "${{ 1 }} ", "${{ 1 }}\n", "x${{ 1 }}", "${{ 1 }}${{ 2 }}"],
)
def test_anything_around_the_expression_makes_a_string(text: str) -> None:
    template = parse_template(text)
    assert template.single is None
    assert isinstance(render(template, ENV), str)


def test_template_segments() -> None:
    template = parse_template("a ${{ x }} b ${{ y.z }}")
    assert template.segments == (
        "a ",
        Expression(" x ", 5, parse("x")),
        " b ",
        Expression(" y.z ", 16, parse("y.z")),
    )
    assert [e.source for e in template.expressions] == [" x ", " y.z "]
    assert not template.is_literal
    assert parse_template("no expressions").is_literal


def test_parse_template_is_cached() -> None:
    assert parse_template("${{ github.ref }}") is parse_template("${{ github.ref }}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("none here", []),
        ("${{ a }}", [(" a ", 3)]),
        ("x ${{a}} y ${{ b.c }}", [("a", 5), (" b.c ", 14)]),
        ("${{ '}}' }}", [(" '}}' ", 3)]),
        ("${{ format('{{0}}', 1) }}", [(" format('{{0}}', 1) ", 3)]),
        ("${{ a }}${{ b }}", [(" a ", 3), (" b ", 11)]),
    ],
)
def test_iter_expressions(text: str, expected: list[tuple[str, int]]) -> None:
    found = list(iter_expressions(text))
    assert found == expected
    assert all(text[offset : offset + len(source)] == source for source, offset in found)


@pytest.mark.parametrize(
    ("text", "fragment", "offset"),
    [
        ("${{ a", "unclosed '${{'", 0),
        ("ok ${{ a }} then ${{ b", "unclosed '${{'", 17),
        ("${{ a }", "unclosed '${{'", 0),
        ("${{ 'abc }}", "unterminated string", 4),
        ("x ${{ it's }}", "unterminated string", 8),
        ("${{ }}", "expected an expression", 4),
        ("${{}}", "expected an expression", 3),
        ("a ${{ b == }}", "unexpected end of expression", 11),
        ("a ${{ nosuch() }}", "unknown function 'nosuch'", 6),
        ("${{ a }} ${{ a b }}", "unexpected 'b'", 15),
        ('${{ "x" }}', "single quotes", 4),
        ("line\n${{ a = 1 }}", "use '=='", 11),
    ],
)
def test_template_errors_point_into_the_text(text: str, fragment: str, offset: int) -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        parse_template(text)
    assert fragment in caught.value.message
    assert caught.value.offset == offset


def test_render_value_renders_nested_data() -> None:
    raw = {
        "NAME": "${{ matrix.os }}",
        "${{ matrix.os }}-key": ["${{ matrix.node }}", "plain", 3, None, True],
        "nested": {"deep": "v=${{ env.GREETING }}", "num": 1.5},
        "matrix": "${{ fromJSON(needs.prepare.outputs.matrix) }}",
        7: "${{ 7 }}",
    }
    assert render_value(raw, ENV) == {
        "NAME": "linux",
        "linux-key": [18, "plain", 3, None, True],
        "nested": {"deep": "v=Hello", "num": 1.5},
        "matrix": {"os": ["a", "b"]},
        7: 7,
    }


def test_render_value_turns_rendered_keys_into_strings() -> None:
    assert render_value({"${{ matrix.node }}": 1, "${{ null }}": 2}, ENV) == {"18": 1, "": 2}


@pytest.mark.parametrize("raw", ["no expressions", 42, 1.5, True, None])
def test_render_value_leaves_plain_values_alone(raw: Any) -> None:
    assert render_value(raw, ENV) == raw


def test_render_value_accepts_tuples() -> None:
    assert render_value(("${{ matrix.os }}", "x"), ENV) == ["linux", "x"]


SUCCESS = Call("success")


def wrapped(node: Node) -> Node:
    return Logical("&&", (SUCCESS, node))


@pytest.mark.parametrize(
    ("value", "tree"),
    [
        (None, SUCCESS),
        ("", SUCCESS),
        ("   ", SUCCESS),
        (True, wrapped(Literal(True))),
        (False, wrapped(Literal(False))),
        ("github.ref", wrapped(parse("github.ref"))),
        ("${{ github.ref }}", wrapped(parse("github.ref"))),
        ("  ${{ github.ref }}\n", wrapped(parse("github.ref"))),
        ("${{ a == 'x' }}", wrapped(parse("a == 'x'"))),
        ("a || b", wrapped(parse("a || b"))),
        ("success()", SUCCESS),
        ("${{ success() }}", SUCCESS),
        ("always()", Call("always")),
        ("failure()", Call("failure")),
        ("cancelled()", Call("cancelled")),
        ("!cancelled()", parse("!cancelled()")),
        ("${{ !cancelled() }}", parse("!cancelled()")),
        ("success() || failure()", parse("success() || failure()")),
        (
            "failure() && steps.ok.outcome == 'success'",
            parse("failure() && steps.ok.outcome == 'success'"),
        ),
        (
            "contains(format('{0}', always()), 'true')",
            parse("contains(format('{0}', always()), 'true')"),
        ),
        ("Always()", Call("always")),
        (
            "${{ a }} && ${{ b }}",
            wrapped(Call("format", (Literal("{0} && {1}"), ContextRef("a"), ContextRef("b")))),
        ),
        (
            "{x} ${{ a }}",
            wrapped(Call("format", (Literal("{{x}} {0}"), ContextRef("a")))),
        ),
        ("x == '${{ a }}'", wrapped(Call("format", (Literal("x == '{0}'"), ContextRef("a"))))),
    ],
)
def test_condition(value: str | bool | None, tree: Node) -> None:
    assert condition(value) == tree


@pytest.mark.parametrize(
    ("value", "status", "contexts", "expected"),
    [
        (None, "success", {}, True),
        (None, "failure", {}, False),
        ("true", "failure", {}, False),
        ("always()", "failure", {}, True),
        ("failure()", "failure", {}, True),
        ("failure()", "success", {}, False),
        ("github.event_name == 'push'", "success", {"github": {"event_name": "push"}}, True),
        ("github.event_name == 'push'", "failure", {"github": {"event_name": "push"}}, False),
        ("${{ env.X == '1' }}", "success", {"env": {"X": "1"}}, True),
        ("${{ false }}", "success", {}, False),
        # A mixed template is a non-empty string, so it is always true (as on GitHub).
        ("${{ false }} && ${{ false }}", "success", {}, True),
        (
            "(always() && !cancelled()) && (needs.t.result != 'success' || !success())",
            "failure",
            {"needs": {"t": {"result": "failure"}}},
            True,
        ),
    ],
)
def test_conditions_evaluate_like_github(
    value: str | None, status: str, contexts: dict[str, Any], expected: bool
) -> None:
    result = evaluate(condition(value), Environment(contexts, status=status))
    assert bool(result) is expected


def test_condition_errors_point_into_the_text() -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        condition("github.ref = 'x'")
    assert caught.value.offset == 11
    with pytest.raises(ExpressionSyntaxError) as caught:
        condition("  ${{ a b }}")
    assert caught.value.offset == 8


def test_condition_is_cached() -> None:
    assert condition("github.ref == 'x'") is condition("github.ref == 'x'")


@pytest.mark.parametrize(("value", "literal"), [(1, 1), (0, 0), (1.5, 1.5)])
def test_condition_accepts_yaml_numbers(value: float, literal: float) -> None:
    assert condition(value) == wrapped(Literal(literal))


@pytest.mark.parametrize("value", [{"a": 1}, ["x"]])
def test_condition_refuses_mappings_and_lists(value: Any) -> None:
    with pytest.raises(ExpressionSyntaxError, match="must be an expression"):
        condition(value)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("success()", True),
        ("a && failure()", True),
        ("!cancelled()", True),
        ("format('{0}', always())", True),
        ("a.b == 'success'", False),
        ("success", False),
        ("steps.success.outputs", False),
    ],
)
def test_is_status_call(source: str, expected: bool) -> None:
    assert is_status_call(parse(source)) is expected


EXPRESSIONS_WORKFLOW_LINES = [
    ("contains-str=${{ contains('Hello world', 'WORLD') }}", "contains-str=true"),
    ("""contains-arr=${{ contains(fromJSON('["a","b"]'), 'B') }}""", "contains-arr=true"),
    ("""contains-arr-no=${{ contains(fromJSON('["ab"]'), 'a') }}""", "contains-arr-no=false"),
    ("startsWith=${{ startsWith('Hello world', 'he') }}", "startsWith=true"),
    ("endsWith=${{ endsWith('Hello world', 'LD') }}", "endsWith=true"),
    ("format=${{ format('{0} {1}', env.GREETING, 'there') }}", "format=Hello there"),
    ("format-braces=${{ format('{{0}} {0} {{{0}}}', 'x') }}", "format-braces={0} x {x}"),
    ("""join=${{ join(fromJSON('["a","b","c"]'), '-') }}""", "join=a-b-c"),
    ("""join-default=${{ join(fromJSON('["a","b"]')) }}""", "join-default=a,b"),
    ("join-string=${{ join('abc', '-') }}", "join-string=abc"),
    ("fromjson-bool=${{ fromJSON('true') }}", "fromjson-bool=true"),
    ("""fromjson-path=${{ fromJSON('{"k":{"v":42}}').k.v }}""", "fromjson-path=42"),
    ("tojson-num=${{ toJSON(1.5) }}", "tojson-num=1.5"),
    ("""filter=${{ join(fromJSON('[{"n":1},{"n":2},{"n":3}]').*.n, ',') }}""", "filter=1,2,3"),
    ("""index=${{ fromJSON('["a","b"]')[1] }}""", "index=b"),
    ("""index-out=[${{ fromJSON('["a","b"]')[5] }}]""", "index-out=[]"),
    ("bracket=${{ github['event_name'] }}", "bracket=push"),
    ("case-insensitive-ctx=${{ GITHUB.EVENT_NAME }}", "case-insensitive-ctx=push"),
    ("missing-prop=[${{ github.event.no_such_thing.deeper }}]", "missing-prop=[]"),
    ("tojson-str=${{ toJSON('x') }}", 'tojson-str="x"'),
    ("tojson-empty=${{ toJSON(fromJSON('[]')) }}", "tojson-empty=[]"),
    ("bool=${{ true }} null=[${{ null }}]", "bool=true null=[]"),
    ("str-eq-ci=${{ 'abc' == 'ABC' }}", "str-eq-ci=true"),
    ("str-num=${{ '10' == 10 }}", "str-num=true"),
    (
        "bool-num=${{ true == 1 }} null-zero=${{ null == 0 }} empty-zero=${{ '' == 0 }}",
        "bool-num=true null-zero=true empty-zero=true",
    ),
    ("nan=${{ 'abc' == 0 }} nan-ne=${{ 'abc' != 0 }}", "nan=false nan-ne=true"),
    ("lt=${{ 1 < 2 }} str-lt=${{ 'a' < 'B' }}", "lt=true str-lt=true"),
    (
        "and=${{ 'x' && 'y' }} or=${{ '' || 'dflt' }} or-zero=${{ 0 || false || 'z' }}",
        "and=y or=dflt or-zero=z",
    ),
    (
        "not=${{ !'' }} not-str=${{ !'a' }} not-zero=${{ !0 }}",
        "not=true not-str=false not-zero=true",
    ),
    ("ternary=${{ env.EMPTY == '' && 'empty' || 'nonempty' }}", "ternary=empty"),
    ("paren=${{ (1 == 1) && (2 > 1 || false) }}", "paren=true"),
]


@pytest.mark.parametrize(("text", "expected"), EXPRESSIONS_WORKFLOW_LINES)
def test_reference_outputs(text: str, expected: str) -> None:
    """Lines the reference implementation printed for the conformance `extra-expressions` case."""
    assert run(text) == expected


def test_reference_to_json_of_an_object_prints_multiple_lines() -> None:
    text = """${{ toJSON(fromJSON('{"a":[1,true,null],"b":"s"}')) }}"""
    assert run(text).splitlines() == [
        "{",
        '  "a": [',
        "    1,",
        "    true,",
        "    null",
        "  ],",
        '  "b": "s"',
        "}",
    ]

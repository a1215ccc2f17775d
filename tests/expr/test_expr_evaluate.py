"""Evaluation: operators, contexts, property access, indexing and the object filter."""

import math
from types import MappingProxyType
from typing import Any

import pytest

from conveyor.errors import ExpressionError
from conveyor.expr import Environment, evaluate, parse
from conveyor.expr.values import FilteredArray

CONTEXTS: dict[str, Any] = {
    "github": {
        "event_name": "push",
        "ref": "refs/heads/main",
        "event": {
            "commits": [{"id": "c1", "author": {"name": "ann"}}, {"id": "c2"}, {"id": "c3"}],
            "issue": {"labels": [{"name": "bug"}, {"name": "help wanted"}]},
            "flag": True,
            "count": 3,
        },
    },
    "env": {"GREETING": "Hello", "EMPTY": "", "ZERO": "0"},
    "steps": {"my-step": {"outputs": {"result": "ok"}, "outcome": "success"}},
    "needs": {"job-1": {"result": "failure", "outputs": {}}},
    "matrix": {"os": "linux", "node": 18, "include": None},
    "foo": {"bar": {"baz": 2}, "Bar": "upper", "true": "it's true", "null": "it's null"},
    "nums": [10, 20, 30],
    "objects": {"a": {"n": 1}, "b": {"n": 2}, "c": {"m": 3}},
    "nested": [[1, 2], [3], {"k": 4}, 5],
    "with_null": [{"n": None}, {"m": 1}],
}


def ev(source: str, contexts: dict[str, Any] | None = None) -> Any:
    return evaluate(parse(source), Environment(CONTEXTS if contexts is None else contexts))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # literals
        ("null", None),
        ("true", True),
        ("false", False),
        ("711", 711),
        ("-9.2", -9.2),
        ("0xff", 255),
        ("-2.99e-2", -0.0299),
        ("'It''s open source!'", "It's open source!"),
        # ! and truthiness
        ("!true", False),
        ("!''", True),
        ("!'a'", False),
        ("!0", True),
        ("!1", False),
        ("!null", True),
        ("!NaN", True),
        ("!!'x'", True),
        ("!github", False),
        ("!github.nothing", True),
        # && and || return operands and short-circuit
        ("'x' && 'y'", "y"),
        ("'' && 'y'", ""),
        ("0 && nosuch.thing", 0),
        ("null && 1", None),
        ("1 && 2 && 3", 3),
        ("1 && 0 && 3", 0),
        ("'' || 'dflt'", "dflt"),
        ("0 || false || 'z'", "z"),
        ("0 || false || null", None),
        ("'a' || nosuch", "a"),
        ("false && 0 || null", None),
        ("false && (0 || null)", False),
        ("1 || 2 && 3", 1),
        ("(1 || 2) && 3", 3),
        # equality and ordering
        ("'abc' == 'ABC'", True),
        ("'10' == 10", True),
        ("true == 1", True),
        ("null == 0", True),
        ("'' == 0", True),
        ("'abc' == 0", False),
        ("'abc' != 0", True),
        ("NaN == NaN", False),
        ("NaN != NaN", True),
        ("1 < 2", True),
        ("'a' < 'B'", True),
        ("1.002 > 1.001", True),
        ("Infinity > 1e300", True),
        # precedence, as GitHub evaluates it
        ("!2 < 3", True),
        ("!(2 < 3)", False),
        ("3 < 2 < 1", True),
        ("3 < (2 < 1)", False),
        ("0 > 0 < 1", True),
        ("2 > 2 > 0", False),
        ("2 > (2 > 0)", True),
        ("2 <= 3 == true", True),
        ("2 <= (3 == true)", False),
        ("2 == 2 == 1", True),
        ("2 == (2 == 1)", False),
        ("2 == 2 != 0", True),
        ("1 == 1 && 2", 2),
        ("1 == (1 && 2)", False),
        ("'a' == 'a' && 'b'", "b"),
        ("'a' == ('a' && 'b')", False),
        ("(1 == 1) && (2 > 1 || false)", True),
        # the ternary idiom
        ("env.EMPTY == '' && 'empty' || 'nonempty'", "empty"),
        ("env.GREETING == '' && 'empty' || 'nonempty'", "nonempty"),
    ],
)
def test_operators(source: str, expected: Any) -> None:
    result = ev(source)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("github.event_name", "push"),
        ("github['event_name']", "push"),
        ("GITHUB.EVENT_NAME", "push"),
        ("Github['Event_Name']", "push"),
        ("github.event.flag", True),
        ("github.event.count", 3),
        ("steps.my-step.outputs.result", "ok"),
        ("STEPS.MY-STEP.OUTCOME", "success"),
        ("needs.job-1.result", "failure"),
        ("matrix.node", 18),
        ("foo.bar.baz", 2),
        ("foo.Bar", "upper"),
        ("foo.true", "it's true"),
        ("foo.null", "it's null"),
        ("(foo).bar.baz", 2),
        ('fromJson(\'{"one": "one val"}\').one', "one val"),
        ('(fromJson(\'{"one": "one val"}\')).one', "one val"),
        ('fromJSON(\'{"k":{"v":42}}\').k.v', 42),
        ("nums[0]", 10),
        ("nums[2]", 30),
        ("nums['1']", 20),
        ("nums[' 0x02 ']", 30),
        ("nums[1.7]", 20),
        ("nums[null]", 10),
        ("nums[false]", 10),
        ("nums[true]", 20),
        ('fromJSON(\'["a","b"]\')[1]', "b"),
        ("github.event.commits[1].id", "c2"),
        ("github.event.commits[0]['author'].name", "ann"),
        ("foo[github.event.count == 3 && 'bar'].baz", 2),
    ],
)
def test_property_access_and_indexing(source: str, expected: Any) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "nosuch",
        "nosuch.deeper.still",
        "github.event.no_such_thing.deeper",
        "github.event_name.length",
        "matrix.include",
        "matrix.include.x",
        "nums[3]",
        "nums[-1]",
        "nums['x']",
        "nums[NaN]",
        "nums[Infinity]",
        "nums[fromJSON('[]')]",
        'fromJSON(\'["a","b"]\')[5]',
        "foo[fromJSON('{}')]",
        "'abc'[0]",
        "(1).x",
        "null.x",
        "true.x",
        "steps.missing.outputs.result",
    ],
)
def test_missing_values_are_null(source: str) -> None:
    assert ev(source) is None


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("github.event.commits.*.id", ["c1", "c2", "c3"]),
        ("github.event.commits[*].id", ["c1", "c2", "c3"]),
        ("github.event.issue.labels.*.name", ["bug", "help wanted"]),
        ("github.event.commits.*.author.name", ["ann"]),
        ("objects.*.n", [1, 2]),
        ("objects.*", [{"n": 1}, {"n": 2}, {"m": 3}]),
        ("nums.*", [10, 20, 30]),
        ("nested.*.*", [1, 2, 3, 4]),
        ("nested.*[0]", [1, 3]),
        ("nested.*.k", [4]),
        ("with_null.*.n", [None]),
        ("github.nothing.*", []),
        ("github.event_name.*", []),
        ('fromJSON(\'[{"n":1},{"n":2},{"n":3}]\').*.n', [1, 2, 3]),
        ("foo[*]", [{"baz": 2}, "upper", "it's true", "it's null"]),
    ],
)
def test_object_filter(source: str, expected: list[Any]) -> None:
    result = ev(source)
    assert result == expected
    assert type(result) is list


def test_object_filter_results_compare_by_identity() -> None:
    assert ev("nums.* == nums.*") is False
    assert ev("nums == nums") is True


def test_contexts_may_be_any_mapping() -> None:
    contexts = MappingProxyType({"Env": MappingProxyType({"Key": "v"}), "list": (1, 2)})
    env = Environment(contexts)
    assert evaluate(parse("env.KEY"), env) == "v"
    assert evaluate(parse("list[1]"), env) == 2
    assert evaluate(parse("toJSON(env)"), env) == '{\n  "Key": "v"\n}'


def test_exact_key_wins_over_case_insensitive_match() -> None:
    contexts = {"ctx": {"Key": "first", "key": "exact"}}
    assert ev("ctx.key", contexts) == "exact"
    assert ev("ctx.KEY", contexts) == "first"


def test_empty_environment() -> None:
    assert evaluate(parse("github.ref || 'none'"), Environment()) == "none"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("case(true, 'first', 'default')", "first"),
        ("case(false, 'first', 'default')", "default"),
        ("case(false, 'first', true, 'second', 'default')", "second"),
        ("case(false, 'first', false, 'second', 'default')", "default"),
        ("case(1 == 1, 'equal', 'not equal')", "equal"),
        ("case(github.ref == 'refs/heads/main', 'main', 'other')", "main"),
        ("case(github.event_name == 'pull_request', 'pr', 'other')", "other"),
        ("case(true, 123, 456)", 123),
        ("case(true, false, true)", False),
        ("case(true, '', 'default')", ""),
        ("case(true, fromJSON('[1,2,3]'), 'default')", [1, 2, 3]),
        ("case(true, 'x', fromJSON('not json'))", "x"),
        ("case(false, fromJSON('not json'), 'y')", "y"),
    ],
)
def test_case(source: str, expected: Any) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "case('not a boolean', 'first', 'default')",
        "case(1, 'first', 'default')",
        "case(null, 'first', 'default')",
        "case(fromJSON('[]'), 'first', 'default')",
        "case(false, 1, 'x', 2, 3)",
    ],
)
def test_case_needs_boolean_conditions(source: str) -> None:
    with pytest.raises(ExpressionError, match="must evaluate to a boolean"):
        ev(source)


def test_nan_and_infinity_literals() -> None:
    assert math.isnan(ev("NaN"))
    assert ev("-Infinity") == -math.inf


def test_evaluate_never_leaks_the_internal_filtered_array() -> None:
    assert type(ev("nums.*")) is list
    assert not isinstance(ev("nums.*"), FilteredArray)

"""The built-in functions, their coercions and their errors."""

from collections.abc import Sequence
from typing import Any

import pytest

from conveyor.errors import ExpressionError
from conveyor.expr import Environment, evaluate, parse

CONTEXTS: dict[str, Any] = {
    "labels": [{"name": "bug"}, {"name": "enhancement"}, {"name": "help wanted"}],
    "items": ["_ITEM-1_", "_ITEM-2_", "_ITEM-3_"],
    "mixed": [None, True, 123.456, "abc", [], ["def"], {}, {"key1": "value1"}],
    "empty_array": [],
    "empty_object": {},
    "obj": {"one": "value one", "two": "value two", "three": "value three"},
    "env": {"GREETING": "Hello"},
}


def ev(source: str, env: Environment | None = None) -> Any:
    return evaluate(parse(source), env or Environment(CONTEXTS))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("contains('Hello world', 'WORLD')", True),
        ("contains('Hello world', 'lo w')", True),
        ("contains('Hello world', 'xyz')", False),
        ("contains('abc', '')", True),
        ("contains('', '')", True),
        ("contains(null, '')", True),
        ("contains('true', true)", True),
        ("contains('a 12.5 b', 12.5)", True),
        ("contains(123, 2)", True),
        ("contains(fromJSON('[\"a\",\"b\"]'), 'B')", True),
        ("contains(fromJSON('[\"ab\"]'), 'a')", False),
        ("contains(fromJSON('[1,2,3]'), '2')", True),
        ("contains(fromJSON('[1,2,3]'), 4)", False),
        ("contains(fromJSON('[true]'), 1)", True),
        ("contains(fromJSON('[null]'), 0)", True),
        ("contains(fromJSON('[]'), '')", False),
        ("contains(labels.*.name, 'BUG')", True),
        ("contains(labels.*.name, 'wontfix')", False),
        ("contains(obj, 'one')", False),
        ("contains(fromJSON('[[1]]'), fromJSON('[1]'))", False),
    ],
)
def test_contains(source: str, expected: bool) -> None:
    assert ev(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("startsWith('Hello world', 'he')", True),
        ("startsWith('Hello world', 'HELLO W')", True),
        ("startsWith('Hello world', 'world')", False),
        ("startsWith('abc', '')", True),
        ("startsWith(12345, 12)", True),
        ("startsWith(true, 'TR')", True),
        ("startsWith(null, '')", True),
        ("startsWith(items, '_')", False),
        ("startsWith('Array', items)", False),
        ("endsWith('Hello world', 'LD')", True),
        ("endsWith('Hello world', 'hello')", False),
        ("endsWith('refs/heads/main', '/MAIN')", True),
        ("endsWith(1.5, '.5')", True),
        ("endsWith('abc', '')", True),
        ("endsWith(obj, 'Object')", False),
    ],
)
def test_starts_and_ends_with(source: str, expected: bool) -> None:
    assert ev(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("format('{0} {1}', env.GREETING, 'there')", "Hello there"),
        ("format('{{0}} {0} {{{0}}}', 'x')", "{0} x {x}"),
        ("format(null)", ""),
        ("format(null, 'some arg')", ""),
        ("format('')", ""),
        ("format('plain')", "plain"),
        ("format('123{0}456', 'abc')", "123abc456"),
        ("format('123{0}456{0}789', 'abc')", "123abc456abc789"),
        ("format('123{0}456{1}789', 'abc', 'def')", "123abc456def789"),
        ("format('{1}{0}', 'a', 'b')", "ba"),
        ("format('{0}123', 'abc')", "abc123"),
        ("format('123{0}', 'abc')", "123abc"),
        ("format('{{0}}', 'abc')", "{0}"),
        ("format('{{{{0}}}}', 'abc')", "{{0}}"),
        ("format('}}', 'abc')", "}"),
        ("format('{{', 'abc')", "{"),
        ("format('}}{{', 'abc')", "}{"),
        ("format('}}{{}}', 'abc')", "}{}"),
        ("format('{0}', null)", ""),
        ("format('{0}', true)", "true"),
        ("format('{0}', 1.0)", "1"),
        ("format('{0}', .5)", "0.5"),
        ("format('{0}', -2.0)", "-2"),
        ("format('{0}', -0)", "0"),
        ("format('{0}', 0x10)", "16"),
        ("format('{0}', 1.2e2)", "120"),
        ("format('{0}', 1.2E-2)", "0.012"),
        ("format('{0}', Infinity)", "Infinity"),
        ("format('{0}', -Infinity)", "-Infinity"),
        ("format('{0}', NaN)", "NaN"),
        ("format('{0}', items)", "Array"),
        ("format('{0}', obj)", "Object"),
        ("format('{0}{10}', 'a', 1, 2, 3, 4, 5, 6, 7, 8, 9, 'k')", "ak"),
        ("format('{00}', 'a')", "a"),
    ],
)
def test_format(source: str, expected: str) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("format('{0')", "invalid format string"),
        ("format('{0', '')", "invalid format string"),
        ("format('{0}}', '')", "invalid format string"),
        ("format('{0}}}}', '')", "invalid format string"),
        ("format('0}')", "invalid format string"),
        ("format('{{0}', '')", "invalid format string"),
        ("format('{{{{0}')", "invalid format string"),
        ("format('}0{', '')", "invalid format string"),
        ("format('}{0}', '')", "invalid format string"),
        ("format('{0}{', '')", "invalid format string"),
        ("format('{}', 'a')", "invalid format string"),
        ("format('{x}', 'a')", "invalid format string"),
        ("format('{ 0}', 'a')", "invalid format string"),
        ("format('{-1}', 'a')", "invalid format string"),
        ("format('{0}')", "references {0} but only 0 argument(s)"),
        ("format('{0}{1}', 'abc')", "references {1} but only 1 argument(s)"),
    ],
)
def test_format_errors(source: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        ev(source)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("join(labels.*.name, ', ')", "bug, enhancement, help wanted"),
        ('join(fromJSON(\'["a","b","c"]\'), \'-\')', "a-b-c"),
        ('join(fromJSON(\'["a","b"]\'))', "a,b"),
        ("join('abc', '-')", "abc"),
        ("join('abc')", "abc"),
        ("join(null)", ""),
        ("join(true)", "true"),
        ("join(123.456)", "123.456"),
        ("join(empty_array)", ""),
        ("join(empty_object)", ""),
        ("join(obj)", ""),
        ("join(mixed)", ",true,123.456,abc,Array,Array,Object,Object"),
        ("join(items, null)", "_ITEM-1__ITEM-2__ITEM-3_"),
        ("join(items, true)", "_ITEM-1_true_ITEM-2_true_ITEM-3_"),
        ("join(items, 123.456)", "_ITEM-1_123.456_ITEM-2_123.456_ITEM-3_"),
        ("join(items, ' | ')", "_ITEM-1_ | _ITEM-2_ | _ITEM-3_"),
        ("join(items, empty_array)", "_ITEM-1_,_ITEM-2_,_ITEM-3_"),
        ("join(items, empty_object)", "_ITEM-1_,_ITEM-2_,_ITEM-3_"),
        ("join(fromJSON('[1, 2.5, null]'), '+')", "1+2.5+"),
    ],
)
def test_join(source: str, expected: str) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("toJSON(null)", "null"),
        ("toJSON(true)", "true"),
        ("toJSON(false)", "false"),
        ("toJSON(0)", "0"),
        ("toJSON(-0)", "0"),
        ("toJSON(42)", "42"),
        ("toJSON(123456789)", "123456789"),
        ("toJSON(-1234.5)", "-1234.5"),
        ("toJSON(1.5)", "1.5"),
        ("toJSON(2e3)", "2000"),
        ("toJSON('')", '""'),
        ("toJSON('x')", '"x"'),
        ("toJSON('abc''def')", '"abc\'def"'),
        ("toJSON('abc\\\"def')", '"abc\\\\\\"def"'),
        ("toJSON('tab\there')", '"tab\\there"'),
        ("toJSON('caf\u00e9')", '"caf\u00e9"'),
        ("toJSON(empty_array)", "[]"),
        ("toJSON(empty_object)", "{}"),
        ("toJSON(fromJSON('[]'))", "[]"),
        ("toJSON(fromJSON('[1,2,3]'))", "[\n  1,\n  2,\n  3\n]"),
        (
            'toJSON(fromJSON(\'{"a":[1,true,null],"b":"s"}\'))',
            '{\n  "a": [\n    1,\n    true,\n    null\n  ],\n  "b": "s"\n}',
        ),
        (
            "toJSON(obj)",
            '{\n  "one": "value one",\n  "two": "value two",\n  "three": "value three"\n}',
        ),
        (
            "toJSON(fromJSON('[[1,2],[\"abc\"],[true,false,null,[],{}]]'))",
            '[\n  [\n    1,\n    2\n  ],\n  [\n    "abc"\n  ],\n'
            "  [\n    true,\n    false,\n    null,\n    [],\n    {}\n  ]\n]",
        ),
        (
            'toJSON(fromJSON(\'{"n":{"x":1.50,"y":{}}}\'))',
            '{\n  "n": {\n    "x": 1.5,\n    "y": {}\n  }\n}',
        ),
        ("toJSON(labels.*.name)", '[\n  "bug",\n  "enhancement",\n  "help wanted"\n]'),
        ("toJSON(toJSON('x'))", '"\\"x\\""'),
    ],
)
def test_to_json(source: str, expected: str) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("fromJSON('null')", None),
        ("fromJSON('true')", True),
        ("fromJSON('false')", False),
        ("fromJSON('0')", 0),
        ("fromJSON('-1234.5')", -1234.5),
        ("fromJSON('\"abc\"')", "abc"),
        ("fromJSON('\"abc''def\"')", "abc'def"),
        ("fromJSON('[]')", []),
        ("fromJSON('[1, 2, 3]')", [1, 2, 3]),
        ("fromJSON('{}')", {}),
        ('fromJSON(\' {"a": {"b": [1, "x"]}} \')', {"a": {"b": [1, "x"]}}),
        ("fromJSON(toJSON(obj)) == obj", False),
        ("fromJSON(toJSON(obj)).two", "value two"),
        ("fromJSON(1)", 1),
        ("fromJSON(true)", True),
    ],
)
def test_from_json(source: str, expected: Any) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("fromJSON('')", "empty input"),
        ("fromJSON('   ')", "empty input"),
        ("fromJSON(null)", "empty input"),
        ("fromJSON('{')", "invalid JSON"),
        ("fromJSON('[1,]')", "invalid JSON"),
        ("fromJSON('abc')", "invalid JSON"),
        ("fromJSON('{''a'': 1}')", "invalid JSON"),
        ("fromJSON('1 2')", "invalid JSON"),
        ("fromJSON(format('{0}{1}', '[[[[[[[[[[', '1'))", "invalid JSON"),
    ],
)
def test_from_json_errors(source: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        ev(source)
    assert fragment in str(caught.value)


def test_from_json_of_very_deep_input_is_an_expression_error() -> None:
    env = Environment({"deep": "[" * 100_000 + "]" * 100_000})
    with pytest.raises(ExpressionError):
        ev("fromJSON(deep)", env)


def test_to_json_of_very_deep_value_is_an_expression_error() -> None:
    value: list[Any] = []
    for _ in range(5000):
        value = [value]
    with pytest.raises(ExpressionError, match="nests too deeply"):
        ev("toJSON(deep)", Environment({"deep": value}))


def test_hash_files_delegates_to_the_environment() -> None:
    seen: list[Sequence[str]] = []

    def hash_files(patterns: Sequence[str]) -> str:
        seen.append(patterns)
        return "abc123"

    env = Environment({"matrix": {"os": "linux"}}, hash_files=hash_files)
    assert ev("hashFiles('**/package-lock.json', matrix.os)", env) == "abc123"
    assert ev("format('{0}-{1}', matrix.os, hashfiles('a'))", env) == "linux-abc123"
    assert seen == [["**/package-lock.json", "linux"], ["a"]]


def test_hash_files_without_a_workspace_is_an_error() -> None:
    with pytest.raises(ExpressionError, match="hashFiles"):
        ev("hashFiles('x')", Environment())


def test_hash_files_turns_os_errors_into_expression_errors() -> None:
    def broken(_patterns: Sequence[str]) -> str:
        raise PermissionError("denied")

    with pytest.raises(ExpressionError, match="denied"):
        ev("hashFiles('x')", Environment(hash_files=broken))


@pytest.mark.parametrize(
    ("status", "cancelled", "expected"),
    [
        ("success", False, {"success": True, "failure": False, "cancelled": False, "always": True}),
        ("failure", False, {"success": False, "failure": True, "cancelled": False, "always": True}),
        (
            "cancelled",
            True,
            {"success": False, "failure": False, "cancelled": True, "always": True},
        ),
        ("success", True, {"success": False, "failure": False, "cancelled": True, "always": True}),
        ("failure", True, {"success": False, "failure": True, "cancelled": True, "always": True}),
    ],
)
def test_status_functions(status: str, cancelled: bool, expected: dict[str, bool]) -> None:
    env = Environment(status=status, cancelled=cancelled)
    assert {name: ev(f"{name}()", env) for name in expected} == expected

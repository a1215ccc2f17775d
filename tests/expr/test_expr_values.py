"""GitHub's coercions: truthiness, numbers, strings, loose equality and ordering."""

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest

from conveyor.expr import to_boolean, to_number, to_string
from conveyor.expr.values import Kind, kind_of, loose_equal, order

NAN = math.nan
ARRAY: list[Any] = [1]
OBJECT: dict[str, Any] = {"a": 1}


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, Kind.NULL),
        (True, Kind.BOOLEAN),
        (0, Kind.NUMBER),
        (1.5, Kind.NUMBER),
        ("", Kind.STRING),
        ([], Kind.ARRAY),
        ((1, 2), Kind.ARRAY),
        ({}, Kind.OBJECT),
        (MappingProxyType({}), Kind.OBJECT),
    ],
)
def test_kinds(value: Any, kind: Kind) -> None:
    assert kind_of(value) is kind


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (False, False),
        (0, False),
        (0.0, False),
        (-0.0, False),
        (NAN, False),
        ("", False),
        (None, False),
        (True, True),
        (1, True),
        (-1, True),
        (0.5, True),
        (math.inf, True),
        ("a", True),
        ("0", True),
        ("false", True),
        (" ", True),
        ([], True),
        ({}, True),
        ([0], True),
    ],
)
def test_to_boolean(value: Any, expected: bool) -> None:
    assert to_boolean(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 0),
        (True, 1),
        (False, 0),
        (0, 0),
        (7, 7),
        (-1.5, -1.5),
        ("", 0),
        ("   ", 0),
        ("10", 10),
        (" 123456.789 ", 123456.789),
        (" +123456.789 ", 123456.789),
        (" -123456.789 ", -123456.789),
        ("1e3", 1000),
        ("2.5E-1", 0.25),
        (".5", 0.5),
        ("5.", 5),
        (" 0xff ", 255),
        (" 0xFF ", 255),
        (" 0o10 ", 8),
        ("0b11", 3),
        (" Infinity ", math.inf),
        (" -Infinity ", -math.inf),
        ("\t42\n", 42),
    ],
)
def test_to_number(value: Any, expected: float) -> None:
    assert to_number(value) == expected


@pytest.mark.parametrize(
    "value",
    ["abc", "1a", "1 2", "0x", "--1", "1e", "inf", "1_000", "\u0663", [], [1], {}, {"a": 1}],
)
def test_to_number_nan(value: Any) -> None:
    assert math.isnan(to_number(value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        ("abc", "abc"),
        (0, "0"),
        (-0.0, "0"),
        (1, "1"),
        (-1, "-1"),
        (1.0, "1"),
        (-2.0, "-2"),
        (1.5, "1.5"),
        (0.5, "0.5"),
        (-0.5, "-0.5"),
        (2e3, "2000"),
        (120.0, "120"),
        (0.012, "0.012"),
        (123456.789, "123456.789"),
        (1234.56, "1234.56"),
        (1.9, "1.9"),
        (0.84551240822557006, "0.84551240822557"),
        (0.1 + 0.2, "0.3"),
        (1e21, "1e+21"),
        (1.5e-7, "1.5e-7"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (1e16, "10000000000000000"),
        (123456789, "123456789"),
        (12345678901234567890, "12345678901234600000"),
        (10**400, "Infinity"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        (NAN, "NaN"),
        ([], "Array"),
        ([1, 2], "Array"),
        ({}, "Object"),
        ({"a": 1}, "Object"),
    ],
)
def test_to_string(value: Any, expected: str) -> None:
    assert to_string(value) == expected


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        # same kinds compare directly
        (None, None, True),
        (True, True, True),
        (True, False, False),
        (1, 1.0, True),
        (1, 2, False),
        (NAN, NAN, False),
        ("abc", "ABC", True),
        ("abc", "abd", False),
        ("", "", True),
        # different kinds compare as numbers
        ("10", 10, True),
        ("10.0", 10, True),
        ("0x0A", 10, True),
        (" 10 ", 10, True),
        ("abc", 0, False),
        ("", 0, True),
        ("", None, True),
        ("", False, True),
        ("0", False, True),
        ("1", True, True),
        ("true", True, False),
        (True, 1, True),
        (False, 0, True),
        (True, 2, False),
        (None, 0, True),
        (None, False, True),
        (None, "null", False),
        # arrays and objects only equal themselves
        (ARRAY, ARRAY, True),
        (OBJECT, OBJECT, True),
        ([1], [1], False),
        ({}, {}, False),
        ([], 0, False),
        ([], "", False),
        ({}, None, False),
        ([], False, False),
    ],
)
def test_loose_equal(left: Any, right: Any, expected: bool) -> None:
    assert loose_equal(left, right) is expected
    assert loose_equal(right, left) is expected


@pytest.mark.parametrize(
    ("op", "left", "right", "expected"),
    [
        ("<", 1, 2, True),
        ("<", 2, 1, False),
        ("<", 1, 1, False),
        ("<=", 1, 1, True),
        (">", 1.002, 1.001, True),
        (">=", 2, 2, True),
        ("<", "a", "B", True),
        ("<", "B", "a", False),
        (">", "def", "abc", True),
        ("<", "abc", "abcd", True),
        ("<=", "ABC", "abc", True),
        (">=", "abc", "ABC", True),
        ("<", "_", "a", False),
        ("<", False, True, True),
        (">", True, False, True),
        ("<", "1", 2, True),
        ("<", "10", 9, False),
        (">", "10", "9", False),
        ("<", None, 1, True),
        ("<=", None, None, True),
        ("<", False, 1, True),
        ("<", "abc", 1, False),
        (">", "abc", 1, False),
        ("<=", "abc", 1, False),
        (">=", "abc", 1, False),
        ("<", NAN, 1, False),
        (">=", NAN, NAN, False),
        ("<", [], [], False),
        ("<=", ARRAY, ARRAY, False),
        (">", {}, {}, False),
        (">=", OBJECT, OBJECT, False),
        ("<", [], 1, False),
    ],
)
def test_order(op: str, left: Any, right: Any, expected: bool) -> None:
    assert order(op, left, right) is expected


def test_mapping_views_count_as_objects() -> None:
    proxy: Mapping[str, int] = MappingProxyType({"a": 1})
    assert to_string(proxy) == "Object"
    assert math.isnan(to_number(proxy))

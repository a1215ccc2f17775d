"""GitHub's value model: kinds, coercions, loose equality, ordering and lookup.

Values are plain Python data: None, bool, int, float, str, sequences (arrays)
and mappings (objects). The rules follow GitHub's documentation: falsy values
are `false, 0, -0, NaN, '', null`; operands of different kinds are compared
as numbers; strings compare case-insensitively; arrays and objects are equal
only to themselves.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, Final


class Kind(Enum):
    """The six kinds of value an expression can produce."""

    NULL = "null"
    BOOLEAN = "boolean"
    NUMBER = "number"
    STRING = "string"
    ARRAY = "array"
    OBJECT = "object"


class FilteredArray(list[Any]):
    """The array an object filter (`.*`) yields; indexing it maps over its elements."""


class _Missing(Enum):
    MISSING = "missing"


MISSING: Final = _Missing.MISSING
"""What a lookup returns for an absent key or index (distinct from a present null)."""

_KIND_BY_TYPE: dict[type, Kind] = {
    type(None): Kind.NULL,
    bool: Kind.BOOLEAN,
    int: Kind.NUMBER,
    float: Kind.NUMBER,
    str: Kind.STRING,
    list: Kind.ARRAY,
    FilteredArray: Kind.ARRAY,
    tuple: Kind.ARRAY,
    dict: Kind.OBJECT,
}

_NUMBER = re.compile(
    r"""[+-]?(?:
        0[xX](?P<hex>[0-9a-fA-F]+)
      | 0[oO](?P<oct>[0-7]+)
      | 0[bB](?P<bin>[01]+)
      | (?P<inf>Infinity)
      | (?P<nan>NaN)
      | (?P<int>\d+)
      | (?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?
    )""",
    re.VERBOSE | re.ASCII,
)

_EXACT_INT_LIMIT = 10**15
"""Integers below this print exactly; larger ones go through 15-significant-digit rounding."""


def kind_of(value: Any) -> Kind:
    """The kind of `value`; unknown objects count as strings (of their `str()`)."""
    kind = _KIND_BY_TYPE.get(type(value))
    if kind is not None:
        return kind
    if isinstance(value, bool):
        return Kind.BOOLEAN
    if isinstance(value, int | float):
        return Kind.NUMBER
    if isinstance(value, Mapping):
        return Kind.OBJECT
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return Kind.ARRAY
    return Kind.STRING


def parse_number(text: str) -> int | float | None:
    """A number literal as GitHub accepts it (JSON numbers, hex, octal, `Infinity`, `NaN`).

    Returns None when `text` is not a number. Whole decimal and hex numbers stay ints.
    """
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    negative = text.startswith("-")
    groups = match.groupdict()
    if groups["nan"]:
        return math.nan
    if groups["inf"]:
        return -math.inf if negative else math.inf
    for name, base in (("hex", 16), ("oct", 8), ("bin", 2)):
        digits = groups[name]
        if digits:
            number = int(digits, base)
            return _small_int(-number if negative else number)
    if groups["int"] and len(groups["int"]) <= 15:
        return int(text)
    return float(text)


def _small_int(number: int) -> int | float:
    """Ints beyond double precision become floats, as every GitHub number is a double."""
    if -(2**53) <= number <= 2**53:
        return number
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def to_boolean(value: Any) -> bool:
    """GitHub's truthiness: false, 0, -0, NaN, '' and null are falsy; all else is truthy."""
    if value is None or value is False:
        return False
    if value is True:
        return True
    kind = kind_of(value)
    if kind is Kind.NUMBER:
        return bool(value) and value == value
    if kind is Kind.STRING:
        return to_string(value) != ""
    return True


def to_number(value: Any) -> int | float:
    """null → 0, booleans → 1/0, numeric strings (trimmed; '' → 0) → number, else NaN."""
    kind = kind_of(value)
    if kind is Kind.NUMBER:
        return _small_int(value) if type(value) is int else float(value)
    if kind is Kind.NULL:
        return 0
    if kind is Kind.BOOLEAN:
        return 1 if value else 0
    if kind is Kind.STRING:
        text = to_string(value).strip()
        if not text:
            return 0
        number = parse_number(text)
        return math.nan if number is None else number
    return math.nan


def to_string(value: Any) -> str:
    """How a value reads when interpolated: null → '', true → 'true', 1.0 → '1', arrays → 'Array'."""
    if type(value) is str:
        return value
    kind = kind_of(value)
    if kind is Kind.NULL:
        return ""
    if kind is Kind.BOOLEAN:
        return "true" if value else "false"
    if kind is Kind.NUMBER:
        return number_to_string(value)
    if kind is Kind.ARRAY:
        return "Array"
    if kind is Kind.OBJECT:
        return "Object"
    return str(value)


def number_to_string(number: int | float) -> str:
    """A number as GitHub prints it: at most 15 significant digits, no trailing '.0'."""
    if isinstance(number, int) and -_EXACT_INT_LIMIT < number < _EXACT_INT_LIMIT:
        return str(int(number))
    number = float(_small_int(number)) if isinstance(number, int) else number
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    if number.is_integer() and abs(number) < _EXACT_INT_LIMIT:
        return str(int(number))
    rounded = float(f"{number:.15g}")
    # Rounding the largest doubles up would overflow; print those unrounded.
    return _shortest_decimal(number if math.isinf(rounded) else rounded)


def _shortest_decimal(number: float) -> str:
    """`number` in JavaScript's Number-to-String layout (plain up to 1e21, else 1.5e+21)."""
    sign = "-" if number < 0 else ""
    mantissa, _, exponent = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    count = len(digits)
    if count <= point <= 21:
        text = digits + "0" * (point - count)
    elif 0 < point <= 21:
        text = f"{digits[:point]}.{digits[point:]}"
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        power = point - 1
        head = digits[0] if count == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{head}e{'+' if power >= 0 else '-'}{abs(power)}"
    return sign + text


def loose_equal(left: Any, right: Any) -> bool:
    """`==`: same kinds compare directly (strings ignoring case); otherwise as numbers."""
    left_kind, right_kind = kind_of(left), kind_of(right)
    if left_kind is right_kind:
        if left_kind is Kind.STRING:
            return to_string(left).upper() == to_string(right).upper()
        if left_kind is Kind.ARRAY or left_kind is Kind.OBJECT:
            return left is right
        return bool(left == right)
    return to_number(left) == to_number(right)


def order(op: str, left: Any, right: Any) -> bool:
    """`<`, `<=`, `>` or `>=`: strings by case-insensitive ordinal, all else as numbers.

    Any comparison involving NaN (and so any array or object) is false.
    """
    a: Any
    b: Any
    if kind_of(left) is Kind.STRING and kind_of(right) is Kind.STRING:
        a, b = to_string(left).upper(), to_string(right).upper()
    else:
        a, b = to_number(left), to_number(right)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def get_property(obj: Mapping[Any, Any], key: str) -> Any:
    """`obj[key]` matching keys case-insensitively; MISSING when absent."""
    try:
        return obj[key]
    except (KeyError, TypeError):
        pass
    wanted = key.upper()
    for name, value in obj.items():
        if isinstance(name, str) and name.upper() == wanted:
            return value
    return MISSING


def index(target: Any, key: Any) -> Any:
    """`target[key]`: object keys as strings, array positions as numbers; MISSING when absent."""
    kind = kind_of(target)
    if kind is Kind.OBJECT:
        key_kind = kind_of(key)
        if key_kind is Kind.ARRAY or key_kind is Kind.OBJECT:
            return MISSING
        return get_property(target, key if type(key) is str else to_string(key))
    if kind is Kind.ARRAY:
        position = to_number(key)
        if position != position or position < 0 or math.isinf(position):
            return MISSING
        whole = int(position)
        return target[whole] if whole < len(target) else MISSING
    return MISSING


def elements(value: Any) -> list[Any]:
    """What an object filter yields for `value`: array elements or object values."""
    kind = kind_of(value)
    if kind is Kind.ARRAY:
        return list(value)
    if kind is Kind.OBJECT:
        return list(value.values())
    return []

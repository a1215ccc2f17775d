"""Numbered statements: named placeholders become PostgreSQL's own, converted once."""

from __future__ import annotations

import pytest

from conveyor.store.postgres_base import Numbered


def test_each_name_gets_one_number_in_order_of_first_use() -> None:
    statement = Numbered.of(
        "UPDATE jobs SET a = %(now)s WHERE id = %(id)s AND b < %(now)s AND c LIKE 'x%%'"
    )
    assert statement.text == "UPDATE jobs SET a = $1 WHERE id = $2 AND b < $1 AND c LIKE 'x%'"
    assert statement.values({"id": "j1", "now": 2.5, "unused": 0}) == [2.5, "j1"]


def test_a_missing_parameter_is_named() -> None:
    with pytest.raises(KeyError, match="epoch"):
        Numbered.of("SELECT %(epoch)s").values({})


def test_positional_placeholders_are_refused() -> None:
    with pytest.raises(ValueError, match="named placeholders only"):
        Numbered.of("SELECT %s, %(a)s")

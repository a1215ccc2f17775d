"""Matrix expansion: GitHub's documented include/exclude examples, limits, names, strategy."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.errors import ConveyorError, Span
from conveyor.workflow.matrix import (
    MAX_COMBINATIONS,
    MatrixError,
    MatrixTooLarge,
    StrategyPlan,
    count_static,
    display_suffix,
    expand,
)
from conveyor.workflow.model import Strategy


def test_product_order_first_key_slowest() -> None:
    assert expand({"os": ["ubuntu", "windows"], "node": [14, 16]}) == [
        {"os": "ubuntu", "node": 14},
        {"os": "ubuntu", "node": 16},
        {"os": "windows", "node": 14},
        {"os": "windows", "node": 16},
    ]


def test_docs_example_include_expanding_and_adding() -> None:
    # "Example: Expanding configurations" from GitHub's matrix docs.
    matrix = {
        "fruit": ["apple", "pear"],
        "animal": ["cat", "dog"],
        "include": [
            {"color": "green"},
            {"color": "pink", "animal": "cat"},
            {"fruit": "apple", "shape": "circle"},
            {"fruit": "banana"},
            {"fruit": "banana", "animal": "cat"},
        ],
    }
    assert expand(matrix) == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]


def test_docs_example_include_adds_a_key_to_one_combination() -> None:
    matrix = {
        "os": ["windows-latest", "ubuntu-latest"],
        "node": [14, 16],
        "include": [{"os": "windows-latest", "node": 16, "npm": 6}],
    }
    assert expand(matrix) == [
        {"os": "windows-latest", "node": 14},
        {"os": "windows-latest", "node": 16, "npm": 6},
        {"os": "ubuntu-latest", "node": 14},
        {"os": "ubuntu-latest", "node": 16},
    ]


def test_docs_example_include_adds_a_new_combination() -> None:
    matrix = {
        "os": ["windows-latest", "ubuntu-latest", "macos-latest"],
        "version": [10, 12, 14],
        "include": [{"os": "windows-latest", "version": 17}],
    }
    combinations = expand(matrix)
    assert len(combinations) == 10
    assert combinations[-1] == {"os": "windows-latest", "version": 17}


def test_docs_example_include_only() -> None:
    matrix = {
        "include": [
            {"site": "production", "datacenter": "site-a"},
            {"site": "staging", "datacenter": "site-b"},
        ]
    }
    assert expand(matrix) == matrix["include"]


def test_docs_example_exclude_partial_match() -> None:
    # Twelve combinations, minus one exact and two partial exclusions: nine jobs.
    matrix = {
        "os": ["macos-latest", "windows-latest"],
        "version": [12, 14, 16],
        "environment": ["staging", "production"],
        "exclude": [
            {"os": "macos-latest", "version": 12, "environment": "production"},
            {"os": "windows-latest", "version": 16},
        ],
    }
    combinations = expand(matrix)
    assert len(combinations) == 9
    assert {"os": "macos-latest", "version": 12, "environment": "production"} not in combinations
    assert all(not (c["os"] == "windows-latest" and c["version"] == 16) for c in combinations)


def test_include_can_add_back_an_excluded_combination() -> None:
    matrix = {
        "os": ["linux", "mac"],
        "exclude": [{"os": "mac"}],
        "include": [{"os": "mac", "extra": True}],
    }
    assert expand(matrix) == [{"os": "linux"}, {"os": "mac", "extra": True}]


def test_object_values_compare_deeply() -> None:
    matrix = {
        "target": [{"os": "linux", "arch": "x64"}, {"os": "mac", "arch": "arm64"}],
        "exclude": [{"target": {"os": "mac", "arch": "arm64"}}],
        "include": [{"target": {"os": "linux", "arch": "x64"}, "cc": "gcc"}],
    }
    assert expand(matrix) == [{"target": {"os": "linux", "arch": "x64"}, "cc": "gcc"}]


def test_true_is_not_one() -> None:
    matrix = {"flag": [True, 1], "exclude": [{"flag": 1}]}
    assert expand(matrix) == [{"flag": True}]
    assert expand({"n": [1, 2], "exclude": [{"n": 1.0}]}) == [{"n": 2}]


def test_combinations_do_not_share_nested_values() -> None:
    combinations = expand({"cfg": [{"a": [1]}], "x": [1, 2]})
    combinations[0]["cfg"]["a"].append(2)
    assert combinations[1]["cfg"] == {"a": [1]}


@pytest.mark.parametrize("matrix", [None, {}])
def test_no_matrix_is_no_combination(matrix: dict[str, Any] | None) -> None:
    assert expand(matrix) == []
    assert count_static(matrix) == 0


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ({"os": []}, "matrix vector 'os' does not contain any values"),
        ({"os": "ubuntu"}, "matrix vector 'os' must be a list, not a string"),
        ({"os": {"a": 1}}, "must be a list, not a mapping"),
        ({"include": []}, "no combinations"),
        ({"include": "x"}, "matrix include must be a list of mappings"),
        ({"include": [1]}, "matrix include[0] must be a mapping, not a number"),
        ({"os": ["a"], "exclude": [None]}, "matrix exclude[0] must be a mapping, not null"),
        ({"os": ["a"], "exclude": [{"os": "a"}]}, "every one was excluded"),
        ({"os": ["a"], "exclude": [{"arch": "x"}]}, "exclude key 'arch' is not a key"),
        ({1: ["a"]}, "matrix key 1 must be a string"),
        ({"a": list(range(16)), "b": list(range(17))}, "combinations, more than 256"),
        ({"include": [{"n": i} for i in range(100_000)]}, "combinations, more than 256"),
        ({"include": [{1: "a"}]}, "matrix include[0] key 1 must be a string"),
        ({"include": [{"n": i} for i in range(257)]}, "combinations, more than 256"),
        (
            {k: list(range(10)) for k in "abcdefgh"},
            "100000000 combinations before exclude, more than 4096",
        ),
    ],
)
def test_invalid_matrices(matrix: Any, message: str) -> None:
    with pytest.raises(MatrixError) as raised:
        expand(matrix)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, ConveyorError)


def test_a_matrix_must_be_a_mapping() -> None:
    with pytest.raises(MatrixError, match="must be a mapping, not a string"):
        expand("${{ fromJSON(x) }}")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "matrix",
    [
        {"a": list(range(16)), "b": list(range(17))},
        {"include": [{"n": i} for i in range(257)]},
        {k: list(range(10)) for k in "abcd"},
    ],
)
def test_too_large_has_its_own_type(matrix: dict[str, Any]) -> None:
    with pytest.raises(MatrixTooLarge):
        expand(matrix)


def test_limit_counts_after_exclude() -> None:
    matrix = {"a": list(range(16)), "b": list(range(17)), "exclude": [{"b": 16}]}
    assert len(expand(matrix)) == MAX_COMBINATIONS


@pytest.mark.parametrize(
    ("matrix", "expected"),
    [
        ({"os": ["a", "b"], "node": [1, 2, 3]}, 6),
        ({"os": "${{ fromJSON(needs.setup.outputs.os) }}"}, None),
        ("${{ fromJSON(needs.setup.outputs.matrix) }}", None),
        ({"os": ["a"], "include": [{"os": "${{ inputs.os }}"}]}, None),
        ({"include": [{"a": 1}, {"a": 2}]}, 2),
    ],
)
def test_count_static(matrix: Any, expected: int | None) -> None:
    assert count_static(matrix) == expected


def test_count_static_reports_errors() -> None:
    with pytest.raises(MatrixError):
        count_static({"os": []})


@pytest.mark.parametrize(
    ("combination", "suffix"),
    [
        ({"node": 1, "os": "a"}, "(1, a)"),
        ({"os": "ubuntu-latest", "node": 16, "npm": 6}, "(ubuntu-latest, 16, 6)"),
        ({"flag": True, "none": None, "f": 2.0, "g": 2.5}, "(true, , 2, 2.5)"),
        ({"target": {"os": "linux", "arch": "x64"}, "cc": "gcc"}, "(linux, x64, gcc)"),
        ({"list": [1, [2, 3]]}, "(1, 2, 3)"),
        ({}, ""),
    ],
)
def test_display_suffix(combination: dict[str, Any], suffix: str) -> None:
    assert display_suffix(combination) == suffix


SPAN = Span("w.yml", 1, 1)


@pytest.mark.parametrize(
    ("strategy", "plan"),
    [
        (None, StrategyPlan(True, None)),
        (Strategy(), StrategyPlan(True, None)),
        (Strategy(fail_fast=False, max_parallel=2), StrategyPlan(False, 2)),
        (Strategy(fail_fast="FALSE", max_parallel="3"), StrategyPlan(False, 3)),
        (Strategy(fail_fast="true", max_parallel=4.0), StrategyPlan(True, 4)),  # type: ignore[arg-type]
    ],
)
def test_strategy_plan(strategy: Strategy | None, plan: StrategyPlan) -> None:
    assert StrategyPlan.from_strategy(strategy) == plan


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (Strategy(fail_fast="${{ inputs.ff }}"), "fail-fast must be true or false"),
        (Strategy(fail_fast=1), "fail-fast must be true or false, not 1"),  # type: ignore[arg-type]
        (Strategy(max_parallel=0), "max-parallel must be a whole number >= 1, not 0"),
        (Strategy(max_parallel="two"), 'max-parallel must be a number, not "two"'),
        (Strategy(max_parallel=True), "max-parallel must be a number, not true"),
        (Strategy(max_parallel="1.5"), "whole number"),
        (Strategy(max_parallel="nan"), "whole number"),
    ],
)
def test_strategy_plan_errors(strategy: Strategy, message: str) -> None:
    with pytest.raises(MatrixError) as raised:
        StrategyPlan.from_strategy(strategy)
    assert message in str(raised.value)


_VECTORS = st.dictionaries(
    st.text("abcdef", min_size=1, max_size=3),
    st.lists(st.integers(0, 9) | st.text("xyz", max_size=2), min_size=1, max_size=4, unique=True),
    min_size=1,
    max_size=4,
)


@given(_VECTORS)
def test_size_is_the_product_without_include_or_exclude(vectors: dict[str, list[Any]]) -> None:
    combinations = expand(vectors)
    assert len(combinations) == math.prod(len(v) for v in vectors.values())
    assert all(list(c) == list(vectors) for c in combinations)
    assert len({tuple(map(repr, c.values())) for c in combinations}) == len(combinations)


@given(_VECTORS, st.data())
def test_exclude_removes_exactly_the_matching(vectors: dict[str, list[Any]], data: Any) -> None:
    key = data.draw(st.sampled_from(sorted(vectors)))
    value = data.draw(st.sampled_from(vectors[key]))
    everything = expand(vectors)
    kept = [c for c in everything if c[key] != value or type(c[key]) is not type(value)]
    if not kept:
        return
    assert expand({**vectors, "exclude": [{key: value}]}) == kept


@given(_VECTORS, st.dictionaries(st.text("uvw", min_size=1, max_size=2), st.integers(), max_size=3))
def test_include_of_new_keys_extends_every_combination(
    vectors: dict[str, list[Any]], extra: dict[str, int]
) -> None:
    plain = expand(vectors)
    if not extra:
        assert expand({**vectors, "include": [extra]}) == plain
        return
    assert expand({**vectors, "include": [extra]}) == [{**c, **extra} for c in plain]

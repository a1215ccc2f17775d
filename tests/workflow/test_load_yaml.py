"""The YAML layer: 1.2 core scalars, positions, and hostile input refused with a clear error."""

from __future__ import annotations

import math
import time

import pytest

from conveyor.errors import Span, WorkflowError
from conveyor.workflow.yamlload import MAX_DEPTH, YMap, YScalar, YSeq, load_yaml, to_plain


def load(text: str) -> object:
    root, problems = load_yaml(text, "w.yml")
    assert problems == []
    return to_plain(root)


def error(text: str) -> str:
    with pytest.raises(WorkflowError) as caught:
        load_yaml(text, "w.yml")
    (diagnostic,) = caught.value.diagnostics
    return str(diagnostic)


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("on", "on"),
        ("yes", "yes"),
        ("no", "no"),
        ("off", "off"),
        ("y", "y"),
        ("Y", "Y"),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("FALSE", False),
        ("null", None),
        ("~", None),
        ("", None),
        ("0", 0),
        ("-12", -12),
        ("010", 10),
        ("0x1F", 31),
        ("0o17", 15),
        ("1_000", "1_000"),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("-.5", -0.5),
        (".inf", math.inf),
        ("-.Inf", -math.inf),
        ("1.2.3", "1.2.3"),
        ("3.10", 3.1),
        ("'true'", "true"),
        ('"1"', "1"),
        ("'null'", "null"),
        ("!!str 12", "12"),
        ("!!float 1", 1.0),
        ("9" * 5000, "9" * 5000),
    ],
)
def test_scalars_resolve_by_yaml_1_2_core_schema(written: str, value: object) -> None:
    assert load(f"k: {written}\n") == {"k": value}


def test_nan_is_a_float() -> None:
    result = load("k: .nan\n")
    assert isinstance(result, dict) and math.isnan(result["k"])


def test_on_key_stays_a_string_and_order_is_kept() -> None:
    assert list(load("jobs: {}\non: push\nname: x\n")) == ["jobs", "on", "name"]  # type: ignore[call-overload]


def test_every_node_has_its_line_and_column() -> None:
    root, _ = load_yaml("a:\n  - x\n  - {b: 'c'}\n", "w.yml")
    assert isinstance(root, YMap)
    seq = root.get("a")
    assert isinstance(seq, YSeq)
    assert seq.span == Span("w.yml", 2, 3)
    assert seq.items[0].span == Span("w.yml", 2, 5)
    inner = seq.items[1]
    assert isinstance(inner, YMap)
    assert inner.key("b") == YScalar("b", "b", Span("w.yml", 3, 6), "", 6)
    assert inner.get("b") == YScalar("c", "c", Span("w.yml", 3, 9), "'", 10)


def test_position_inside_a_literal_block_follows_its_lines() -> None:
    root, _ = load_yaml("run: |\n  one\n    two ${{ x }}\n", "w.yml")
    assert isinstance(root, YMap)
    run = root.get("run")
    assert isinstance(run, YScalar)
    offset = run.text.index("${{")
    assert run.position(offset) == Span("w.yml", 3, 9)


def test_position_inside_an_escaped_quoted_scalar_is_its_start() -> None:
    root, _ = load_yaml('k: "a\\tb ${{ x }}"\n', "w.yml")
    assert isinstance(root, YMap)
    scalar = root.get("k")
    assert isinstance(scalar, YScalar)
    assert scalar.position(5) == Span("w.yml", 1, 4)


def test_aliases_expand_to_the_anchored_value() -> None:
    assert load("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}


def test_duplicate_keys_are_reported_and_the_first_wins() -> None:
    root, problems = load_yaml("a: 1\nb: 2\na: 3\n", "w.yml")
    assert to_plain(root) == {"a": 1, "b": 2}
    assert [str(p) for p in problems] == ["w.yml:3:1: duplicate key 'a' [duplicate-key]"]


def test_empty_document_is_none() -> None:
    assert load_yaml("# only a comment\n", "w.yml") == (None, [])


def test_syntax_error_points_at_the_problem() -> None:
    assert error("a: [1, 2\nb: 3\n") == (
        "w.yml:2:2: did not find expected ',' or ']' "
        "(while parsing a flow sequence at 1:4) [yaml-syntax]"
    )


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    started = time.perf_counter()
    message = error("\n".join(lines) + "\n")
    assert time.perf_counter() - started < 1
    assert message.endswith("document expands to more than 100000 nodes [yaml-limit]")


def test_recursive_alias_is_refused() -> None:
    assert error("a: &a [*a]\n") == "w.yml:1:8: alias *a refers to itself [yaml-limit]"


def test_unknown_alias_is_a_syntax_error() -> None:
    assert error("a: *nope\n") == "w.yml:1:4: unknown alias *nope [yaml-syntax]"


def test_deep_block_nesting_is_refused() -> None:
    text = "".join(" " * i + "k:\n" for i in range(MAX_DEPTH + 5))
    assert error(text).endswith(f"nesting deeper than {MAX_DEPTH} [yaml-limit]")


def test_deep_flow_nesting_is_refused_without_recursion() -> None:
    assert "[yaml-" in error("[" * 200_000 + "]" * 200_000)


def test_alias_that_would_nest_too_deep_is_refused() -> None:
    deep = "a: &a " + "[" * 40 + "]" * 40 + "\n"
    nested = "b: " + "[" * 30 + "*a" + "]" * 30 + "\n"
    assert error(deep + nested).endswith(f"nesting deeper than {MAX_DEPTH} [yaml-limit]")


def test_file_larger_than_the_limit_is_refused() -> None:
    assert error("a: " + "x" * (1024 * 1024) + "\n") == (
        "w.yml:1:1: file is larger than 1048576 bytes [yaml-limit]"
    )


def test_nul_byte_is_refused_with_its_position() -> None:
    assert error("on: push\nname: a\x00b\n") == (
        "w.yml:2:8: control characters are not allowed (found '\\x00') [yaml-syntax]"
    )


def test_binary_junk_is_refused() -> None:
    assert "[yaml-syntax]" in error(bytes(range(256)).decode("latin-1"))


def test_collection_keys_are_refused() -> None:
    assert error("? [a]\n: b\n") == "w.yml:1:3: mapping keys must be scalars [yaml-syntax]"


def test_huge_key_is_a_syntax_error() -> None:
    assert error("k" * 5000 + ": 1\n").endswith("[yaml-syntax]")


def test_foreign_tags_are_refused() -> None:
    assert error("a: !!python/object:os.system x\n") == (
        "w.yml:1:4: unsupported tag 'tag:yaml.org,2002:python/object:os.system' [yaml-syntax]"
    )


def test_wrongly_tagged_scalar_is_refused() -> None:
    assert error("a: !!int twelve\n") == "w.yml:1:4: 'twelve' is not a valid !!int [yaml-syntax]"


def test_two_documents_are_refused() -> None:
    assert error("a: 1\n---\nb: 2\n") == "w.yml:2:1: expected one YAML document [yaml-syntax]"

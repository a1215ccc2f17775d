"""The parser: tree shapes, GitHub's precedence, functions, offsets and syntax errors."""

import pytest

from conveyor.errors import ExpressionSyntaxError
from conveyor.expr import (
    KNOWN_FUNCTIONS,
    MAX_DEPTH,
    Call,
    Compare,
    ContextRef,
    Index,
    Literal,
    Logical,
    Node,
    Not,
    Star,
    context_names,
    parse,
    walk,
)


def ref(name: str) -> ContextRef:
    return ContextRef(name)


def prop(target: Node, name: str) -> Index:
    return Index(target, Literal(name))


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        ("null", Literal(None)),
        ("true", Literal(True)),
        ("'x'", Literal("x")),
        ("42", Literal(42)),
        ("github", ref("github")),
        ("github.event_name", prop(ref("github"), "event_name")),
        ("a.b.c", prop(prop(ref("a"), "b"), "c")),
        ("a['b']", Index(ref("a"), Literal("b"))),
        ("a[0]", Index(ref("a"), Literal(0))),
        ("a[b.c]", Index(ref("a"), prop(ref("b"), "c"))),
        ("a.*", Star(ref("a"))),
        ("a[*]", Star(ref("a"))),
        ("a.*.b", prop(Star(ref("a")), "b")),
        ("a.null", prop(ref("a"), "null")),
        ("steps.my-step.outputs", prop(prop(ref("steps"), "my-step"), "outputs")),
        ("!a", Not(ref("a"))),
        ("!!a", Not(Not(ref("a")))),
        ("!a.b", Not(prop(ref("a"), "b"))),
        ("(!a).b", prop(Not(ref("a")), "b")),
        ("(a)", ref("a")),
        ("((a))", ref("a")),
        ("a == b", Compare("==", ref("a"), ref("b"))),
        ("a != b", Compare("!=", ref("a"), ref("b"))),
        ("a < b", Compare("<", ref("a"), ref("b"))),
        ("a <= b", Compare("<=", ref("a"), ref("b"))),
        ("a > b", Compare(">", ref("a"), ref("b"))),
        ("a >= b", Compare(">=", ref("a"), ref("b"))),
        ("a && b", Logical("&&", (ref("a"), ref("b")))),
        ("a || b", Logical("||", (ref("a"), ref("b")))),
        ("a && b && c", Logical("&&", (ref("a"), ref("b"), ref("c")))),
        ("a || b || c", Logical("||", (ref("a"), ref("b"), ref("c")))),
        ("success()", Call("success")),
        ("fromJSON('1').a", prop(Call("fromJSON", (Literal("1"),)), "a")),
        ("'abc'.x", prop(Literal("abc"), "x")),
    ],
)
def test_tree_shapes(source: str, tree: Node) -> None:
    assert parse(source) == tree


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        # || binds loosest, then &&.
        ("a || b && c", Logical("||", (ref("a"), Logical("&&", (ref("b"), ref("c")))))),
        ("a && b || c", Logical("||", (Logical("&&", (ref("a"), ref("b"))), ref("c")))),
        ("(a || b) && c", Logical("&&", (Logical("||", (ref("a"), ref("b"))), ref("c")))),
        # && is looser than equality.
        (
            "a == b && c != d",
            Logical("&&", (Compare("==", ref("a"), ref("b")), Compare("!=", ref("c"), ref("d")))),
        ),
        # equality is looser than ordering.
        ("a < b == c", Compare("==", Compare("<", ref("a"), ref("b")), ref("c"))),
        ("a == b < c", Compare("==", ref("a"), Compare("<", ref("b"), ref("c")))),
        # ordering is looser than !.
        ("!a < b", Compare("<", Not(ref("a")), ref("b"))),
        # ! is looser than property access and indexing.
        ("!a[0]", Not(Index(ref("a"), Literal(0)))),
        # same-level operators group to the left.
        ("a < b < c", Compare("<", Compare("<", ref("a"), ref("b")), ref("c"))),
        ("a == b != c", Compare("!=", Compare("==", ref("a"), ref("b")), ref("c"))),
        ("a <= b > c", Compare(">", Compare("<=", ref("a"), ref("b")), ref("c"))),
    ],
)
def test_precedence(source: str, tree: Node) -> None:
    assert parse(source) == tree


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("fromJson('1')", "fromJSON"),
        ("FROMJSON('1')", "fromJSON"),
        ("tojson(1)", "toJSON"),
        ("TOJSON(1)", "toJSON"),
        ("StartsWith('a', 'b')", "startsWith"),
        ("ENDSWITH('a', 'b')", "endsWith"),
        ("Contains('a', 'b')", "contains"),
        ("FORMAT('a')", "format"),
        ("Join('a')", "join"),
        ("hashfiles('a')", "hashFiles"),
        ("Success()", "success"),
        ("ALWAYS()", "always"),
        ("Cancelled()", "cancelled"),
        ("FAILURE()", "failure"),
        ("CASE(true, 1, 2)", "case"),
    ],
)
def test_function_names_ignore_case(source: str, name: str) -> None:
    node = parse(source)
    assert isinstance(node, Call)
    assert node.name == name


def test_known_functions_cover_the_documented_set() -> None:
    names = {spec.name for spec in KNOWN_FUNCTIONS.values()}
    assert names == {
        "contains",
        "startsWith",
        "endsWith",
        "format",
        "join",
        "toJSON",
        "fromJSON",
        "hashFiles",
        "case",
        "success",
        "always",
        "cancelled",
        "failure",
    }


@pytest.mark.parametrize(
    "source",
    [
        "contains('a', 'b')",
        "format('x')",
        "format('{0}{1}{2}', 1, 2, 3)",
        "join(a)",
        "join(a, ',')",
        "hashFiles('a', 'b', 'c')",
        "case(true, 1, 2)",
        "case(a, 1, b, 2, 3)",
        "success()",
    ],
)
def test_valid_argument_counts(source: str) -> None:
    assert isinstance(parse(source), Call)


@pytest.mark.parametrize(
    ("source", "fragment", "offset"),
    [
        ("contains('a')", "too few arguments for contains()", 0),
        ("contains('a', 'b', 'c')", "too many arguments for contains()", 0),
        ("startsWith()", "too few arguments", 0),
        ("endsWith(1, 2, 3)", "too many arguments", 0),
        ("format()", "too few arguments for format()", 0),
        ("join()", "too few arguments for join()", 0),
        ("join(1, 2, 3)", "too many arguments for join()", 0),
        ("toJSON()", "too few arguments", 0),
        ("fromJSON(1, 2)", "too many arguments", 0),
        ("hashFiles()", "too few arguments", 0),
        ("success(1)", "too many arguments for success()", 0),
        ("a && always(1)", "too many arguments for always()", 5),
        ("case(true, 1)", "too few arguments for case()", 0),
        ("case(true, 'first', false, 'second')", "odd number of arguments", 0),
        ("nosuch(1)", "unknown function 'nosuch'", 0),
        ("a == toJason(1)", "unknown function 'toJason'", 5),
    ],
)
def test_function_errors(source: str, fragment: str, offset: int) -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        parse(source)
    assert fragment in caught.value.message
    assert caught.value.offset == offset


@pytest.mark.parametrize(
    ("source", "fragment", "offset"),
    [
        ("", "expected an expression", 0),
        ("   ", "expected an expression", 3),
        ("a ==", "unexpected end of expression", 4),
        ("a b", "unexpected 'b'", 2),
        ("(a", "expected ')'", 2),
        ("a)", "unexpected ')'", 1),
        ("a[0", "expected ']'", 3),
        ("a[]", "unexpected ']'", 2),
        ("a.", "expected a property name", 2),
        ("a.1", "expected a property name", 2),
        ("foo[1].2", "unexpected '2'; expected a property name", 7),
        ("a..b", "invalid number '.b'", 2),
        ("join(1,)", "unexpected ')'", 7),
        ("contains('a' 'b')", "expected ',' or ')'", 13),
        ("&& a", "unexpected '&&'", 0),
        ("a || || b", "unexpected '||'", 5),
        ("!", "unexpected end of expression", 1),
        ("a.b()", "unexpected '('", 3),
        ("(a)(b)", "unexpected '('", 3),
        ("'a' 'b'", "unexpected ''b''", 4),
        ("github.*.", "expected a property name", 9),
        ("[1]", "unexpected '['", 0),
        (",", "unexpected ','", 0),
    ],
)
def test_syntax_errors(source: str, fragment: str, offset: int) -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        parse(source)
    assert fragment in caught.value.message
    assert caught.value.offset == offset
    assert 0 <= caught.value.offset <= len(source)


def test_offsets_point_at_each_node() -> None:
    node = parse("a && b.c == 'x'")
    assert isinstance(node, Logical)
    assert node.operands[0].offset == 0
    comparison = node.operands[1]
    assert isinstance(comparison, Compare)
    assert comparison.offset == 5
    assert comparison.left.offset == 5
    assert comparison.right.offset == 12


def test_offsets_do_not_take_part_in_equality() -> None:
    assert parse("a==b") == parse("  a  ==  b  ")


def test_nesting_within_the_limit_parses() -> None:
    source = "(" * (MAX_DEPTH - 1) + "a" + ")" * (MAX_DEPTH - 1)
    assert parse(source) == ref("a")
    assert isinstance(parse("!" * (MAX_DEPTH - 1) + "a"), Not)


@pytest.mark.parametrize(
    "source",
    [
        "(" * 500 + "a" + ")" * 500,
        "!" * 500 + "a",
        "f(" * 500,
        "a" + "[0]" * 500,
        "a" + ".b" * 500,
        " < ".join(["1"] * 500),
        "format(" * 200 + "'x'" + ")" * 200,
    ],
)
def test_deep_nesting_is_a_syntax_error_not_a_crash(source: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        parse(source)
    assert "nests too deeply" in caught.value.message or "unknown function" in caught.value.message
    assert 0 <= caught.value.offset <= len(source)


def test_long_flat_chains_are_fine() -> None:
    source = " || ".join(f"a == {i}" for i in range(500))
    node = parse(source)
    assert isinstance(node, Logical)
    assert len(node.operands) == 500


def test_parse_is_cached() -> None:
    assert parse("github.ref == 'main'") is parse("github.ref == 'main'")


def test_walk_and_context_names() -> None:
    node = parse("contains(github.event.labels.*.name, 'x') && NEEDS.build.result")
    assert context_names(node) == {"github", "needs"}
    assert sum(isinstance(n, Call) for n in walk(node)) == 1

"""GitHub's filter patterns: the cheat sheet's examples, ordering of `!`, errors, hostile input."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.errors import ConveyorError
from conveyor.workflow.glob import (
    MAX_PATTERN_LENGTH,
    GlobError,
    any_match,
    compile_glob,
    match_filters,
)

# (pattern, matching values, non-matching values): the docs' "Patterns to match
# branches and tags" and "Patterns to match file paths" tables, plus neighbours.
CHEAT_SHEET = [
    ("feature/*", ["feature/my-branch", "feature/your-branch"], ["feature/a/b", "feature"]),
    (
        "feature/**",
        ["feature/beta-a/my-branch", "feature/your-branch", "feature/mona/the/octocat"],
        ["features/x", "main"],
    ),
    ("main", ["main"], ["main2", "xmain", "Main"]),
    ("releases/mona-the-octocat", ["releases/mona-the-octocat"], ["releases/mona"]),
    ("*", ["main", "releases", "README.md", "server.rb"], ["releases/v1", "a/b"]),
    ("**", ["all/the/branches", "every/tag", "all/the/files.md", ""], []),
    ("*feature", ["mona-feature", "feature", "ver-10-feature"], ["feature-x", "a/feature"]),
    ("v2*", ["v2", "v2.0", "v2.9"], ["v1", "v3.2", "v2/x"]),
    ("v[12].[0-9]+.[0-9]+", ["v1.10.1", "v2.0.0"], ["v3.0.0", "v1.x.1", "v1..1", "v1.0"]),
    ("*.jsx?", ["page.js", "page.jsx"], ["page.jsxx", "page.j", "src/page.js"]),
    ("*.js", ["app.js", "index.js"], ["js/index.js", "app.jsx"]),
    ("**.js", ["index.js", "js/index.js", "src/js/app.js"], ["index.jsx"]),
    ("docs/*", ["docs/README.md", "docs/file.txt"], ["docs/mona/octocat.txt", "README.md"]),
    ("docs/**", ["docs/README.md", "docs/mona/octocat.txt"], ["doc/x", "src/docs/x"]),
    (
        "docs/**/*.md",
        ["docs/README.md", "docs/mona/hello-world.md", "docs/a/markdown/file.md"],
        ["docs/a/file.txt", "README.md"],
    ),
    (
        "**/docs/**",
        ["docs/hello.md", "dir/docs/my-file.txt", "space/docs/plan/space.doc"],
        ["documents/x", "dir/docs"],
    ),
    (
        "**/README.md",
        ["README.md", "js/README.md", "a/b/c/README.md"],
        ["README.mdx", "xREADME.md"],
    ),
    ("**/*src/**", ["a/src/app.js", "my-src/code/js/app.js"], ["src", "a/srcs/app.js"]),
    ("**/*-post.md", ["my-post.md", "path/their-post.md"], ["post.md", "path/my-post.mdx"]),
    (
        "**/migrate-*.sql",
        ["migrate-10909.sql", "db/migrate-v1.0.sql", "db/sept/migrate-v1.sql"],
        ["db/migrate/x.sql"],
    ),
    ("[CB]at", ["Cat", "Bat"], ["cat", "at", "CBat"]),
    ("[1-2]00", ["100", "200"], ["300", "00"]),
    ("[0-9a-z]", ["0", "7", "a", "q"], ["A", "-", "ab"]),
    ("Octo*", ["Octocat", "Octo"], ["octocat"]),
    ("a+b", ["ab", "aab", "aaaab"], ["b", "aac"]),
    ("x[ab]+", ["xa", "xbab"], ["x", "xc"]),
    ("a?b", ["b", "ab"], ["aab"]),
    ("a/**/b", ["a/b", "a/x/b", "a/x/y/b"], ["ab", "a/xb"]),
    ("**/**/x", ["x", "a/x", "a/b/x"], ["ax"]),
    ("release/v[0-9].[0-9]", ["release/v1.2"], ["release/v10.2"]),
]


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [(p, v, True) for p, yes, _ in CHEAT_SHEET for v in yes]
    + [(p, v, False) for p, _, no in CHEAT_SHEET for v in no],
)
def test_cheat_sheet(pattern: str, value: str, expected: bool) -> None:
    assert compile_glob(pattern).match(value) is expected


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        (r"a\*b", "a*b", True),
        (r"a\*b", "axb", False),
        (r"v1\.0\+build", "v1.0+build", True),
        (r"\!important", "!important", True),
        (r"x\?", "x?", True),
        (r"x\?", "x", False),
        (r"[\]]", "]", True),
        ("[-_]", "_", True),
        ("[a-]", "-", True),
        ("a]", "a]", True),
    ],
)
def test_escapes_and_literals(pattern: str, value: str, expected: bool) -> None:
    assert compile_glob(pattern).match(value) is expected


def test_negation_prefix_is_reported_not_applied() -> None:
    glob = compile_glob("!README.md")
    assert glob.negated
    assert glob.match("README.md")
    assert not compile_glob("README.md").negated


@pytest.mark.parametrize(
    ("patterns", "value", "expected"),
    [
        # The docs' two `!` examples: later patterns override earlier ones.
        (["*.md", "!README.md"], "hello.md", True),
        (["*.md", "!README.md"], "README.md", False),
        (["*.md", "!README.md"], "docs/hello.md", False),
        (["*.md", "!README.md", "README*"], "hello.md", True),
        (["*.md", "!README.md", "README*"], "README.md", True),
        (["*.md", "!README.md", "README*"], "README.doc", True),
        (["releases/**", "!releases/**-alpha"], "releases/v1", True),
        (["releases/**", "!releases/**-alpha"], "releases/beta/3-alpha", False),
        (["!main"], "main", False),  # negations alone select nothing
        (["!main"], "dev", False),
        ([], "main", False),
    ],
)
def test_match_filters_order(patterns: list[str], value: str, expected: bool) -> None:
    assert match_filters(patterns, value) is expected


def test_any_match_is_true_when_one_path_is_selected() -> None:
    assert any_match(["docs/**"], ["src/a.py", "docs/b.md"])
    assert not any_match(["docs/**"], ["src/a.py"])
    assert not any_match(["docs/**"], [])


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "empty filter pattern"),
        ("!", "negates nothing"),
        ("v[0-9", "unclosed '[' at position 1"),
        ("[]", "empty '[]' at position 0"),
        ("[z-a]", "invalid range 'z-a'"),
        ("[a-Z]", "invalid range 'a-Z'"),
        ("[!-~]", "invalid range '!-~'"),
        ("?abc", "'?' at position 0"),
        ("!+abc", "'+' at position 1"),
        ("abc\\", "ends with an unescaped"),
        ("x" * (MAX_PATTERN_LENGTH + 1), "longer than"),
    ],
)
def test_invalid_patterns(pattern: str, message: str) -> None:
    with pytest.raises(GlobError) as raised:
        compile_glob(pattern)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, ConveyorError)


def test_invalid_pattern_in_filters_raises() -> None:
    with pytest.raises(GlobError):
        match_filters(["main", "feat/[x"], "dev")


def test_pathological_pattern_finishes() -> None:
    # A backtracking matcher needs ~n^6 steps here; this one is linear.
    glob = compile_glob("*a*a*a*a*a*a*b")
    assert not glob.match("a" * 5000)
    assert glob.match("a" * 5000 + "b")
    assert not compile_glob("**a**a**a**a**a**c").match("a/" * 3000)


def test_enormous_pattern_is_matched() -> None:
    pattern = "*" + "ab*" * 3000
    glob = compile_glob(pattern)
    assert glob.match("ab" * 3000)
    assert not glob.match("ab" * 2999)


def test_quantifiers_compose() -> None:
    assert compile_glob("a+?").match("")
    assert compile_glob("a?+").match("aaa")
    assert compile_glob("*+").match("abc")
    assert not compile_glob("*?").match("a/b")


_PATTERN_ALPHABET = st.sampled_from(list("ab/*?+[]-!\\.z09"))


@given(st.text(_PATTERN_ALPHABET, max_size=30), st.text("ab/.z", max_size=30))
def test_any_pattern_compiles_or_raises_value_error(pattern: str, value: str) -> None:
    try:
        glob = compile_glob(pattern)
    except ValueError:
        return
    assert isinstance(glob.match(value), bool)


@given(st.text(st.characters(blacklist_characters="*?+[]\\!"), min_size=1, max_size=40))
def test_plain_text_matches_only_itself(text: str) -> None:
    glob = compile_glob(text)
    assert glob.match(text)
    assert not glob.match(text + "x")


@given(st.lists(st.text("ab", min_size=1, max_size=4), min_size=1, max_size=5))
def test_star_never_crosses_a_slash(segments: list[str]) -> None:
    path = "/".join(segments)
    assert compile_glob("**").match(path)
    assert compile_glob("*").match(path) is (len(segments) == 1)
    assert compile_glob("/".join("*" for _ in segments)).match(path)


# Pieces of a pattern with the regex each one means; `compatible` keeps two
# neighbours from fusing into a different token (`*` + `*` is `**`).
_PIECES = {
    "a": "a",
    "b": "b",
    "/": "/",
    "a?": "a?",
    "b+": "b+",
    "[ab]": "[ab]",
    "*": "[^/]*",
    "**": ".*",
    "**/": "(?:.*/)?",
}


def _compatible(previous: str | None, piece: str) -> bool:
    if piece == "**/":
        return previous in (None, "/")
    if previous in ("*", "**") and piece[0] in "*/":
        return False
    return not (previous == "**/" and piece.startswith("*"))


@st.composite
def patterns_with_regex(draw: st.DrawFn) -> tuple[str, str]:
    pieces: list[str] = []
    for _ in range(draw(st.integers(1, 8))):
        previous = pieces[-1] if pieces else None
        choices = [p for p in _PIECES if _compatible(previous, p)]
        pieces.append(draw(st.sampled_from(choices)))
    return "".join(pieces), "".join(_PIECES[p] for p in pieces)


@given(patterns_with_regex(), st.text("ab/", max_size=12))
def test_agrees_with_a_regex_oracle(pattern_and_regex: tuple[str, str], value: str) -> None:
    pattern, regex = pattern_and_regex
    assert compile_glob(pattern).match(value) is bool(re.fullmatch(regex, value))

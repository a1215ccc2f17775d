"""GITHUB_ENV / GITHUB_OUTPUT / GITHUB_PATH files as real shells write them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conveyor.errors import ConveyorError
from conveyor.runner.envfiles import EnvFileError, parse_env_file, prepend_path, read_path_file


def write_with_bash(tmp_path: Path, script: str) -> str:
    """Run `script` with GITHUB_ENV pointing at a fresh file; return what it wrote."""
    target = tmp_path / "env"
    target.touch()
    subprocess.run(
        ["bash", "-e", "-c", script],
        env={"GITHUB_ENV": str(target), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return target.read_text(encoding="utf-8")


def test_single_line_values_keep_everything_after_the_first_equals() -> None:
    assert parse_env_file("KEY=value\nKEY=value=anothervalue\nEMPTY=\n") == [
        ("KEY", "value"),
        ("KEY", "value=anothervalue"),
        ("EMPTY", ""),
    ]


def test_environment_files_case_written_by_bash(tmp_path: Path) -> None:
    # The writes of the env-and-path conformance case, indented as in its workflow.
    text = write_with_bash(
        tmp_path,
        """
        echo "KEY=value" >> $GITHUB_ENV
        echo 'KEY2<<EOF' >> $GITHUB_ENV
              echo value2 >> $GITHUB_ENV
              echo 'EOF' >> $GITHUB_ENV
        echo 'KEY3<<ghadelimiter_b8273c6d-d535-419a-a010-b0aaac240e36' >> $GITHUB_ENV
              echo value3 >> $GITHUB_ENV
              echo 'ghadelimiter_b8273c6d-d535-419a-a010-b0aaac240e36' >> $GITHUB_ENV
        """,
    )
    assert dict(parse_env_file(text)) == {"KEY": "value", "KEY2": "value2", "KEY3": "value3"}


def test_heredoc_body_line_that_looks_like_an_assignment_is_part_of_the_value(
    tmp_path: Path,
) -> None:
    # environment-files-parser-bug: `x=...` inside the heredoc is not a variable.
    text = write_with_bash(
        tmp_path,
        """
        echo "test<<World" > $GITHUB_ENV
        echo "x=Thats really Weird" >> $GITHUB_ENV
        echo "World" >> $GITHUB_ENV
        """,
    )
    assert parse_env_file(text) == [("test", "x=Thats really Weird")]


def test_heredoc_keeps_body_lines_verbatim() -> None:
    text = "MULTI<<END\n  indented\n\nEND \nlast\nEND\nAFTER=1\n"
    # "END " (trailing blank) is not the delimiter; the blank body line stays.
    assert parse_env_file(text) == [("MULTI", "  indented\n\nEND \nlast"), ("AFTER", "1")]


def test_heredoc_with_empty_body_is_an_empty_value() -> None:
    assert parse_env_file("A<<EOF\nEOF\n") == [("A", "")]


def test_equals_before_heredoc_marker_makes_a_single_line_value() -> None:
    assert parse_env_file("A=b<<c\n") == [("A", "b<<c")]


def test_crlf_line_ends_and_blank_lines_are_tolerated() -> None:
    text = "\r\nA=1\r\n\r\nB<<EOF\r\nx\r\ny\r\nEOF\r\n   \nC=3"
    assert parse_env_file(text) == [("A", "1"), ("B", "x\ny"), ("C", "3")]


def test_unicode_names_and_values_pass_through() -> None:
    assert parse_env_file("GRÜSSE=héllo 🌍\n") == [("GRÜSSE", "héllo 🌍")]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("A=1\nB<<EOF\nbody\n", 2, "no line 'EOF' closes the value of 'B'"),
        ("A=1\n\njust text\n", 3, "expected NAME=value or NAME<<DELIMITER"),
        ("=value\n", 1, "empty name"),
        ("<<EOF\nx\nEOF\n", 1, "empty name"),
        ("A<<\nx\n", 1, "empty delimiter"),
    ],
)
def test_malformed_files_raise_with_the_line_number(text: str, line: int, fragment: str) -> None:
    with pytest.raises(EnvFileError) as info:
        parse_env_file(text, source="GITHUB_ENV")
    assert info.value.line == line
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"GITHUB_ENV, line {line}: ")
    assert isinstance(info.value, ConveyorError)


def test_path_file_lists_directories_in_written_order() -> None:
    assert read_path_file("/a\r\n\n/b c\n  \n/d") == ["/a", "/b c", "/d"]


def test_later_path_additions_come_first() -> None:
    # env-and-path: someOtherFolder (added second) precedes someFolder in PATH.
    prefix = prepend_path([], read_path_file("/home/someFolder\n"))
    prefix = prepend_path(prefix, read_path_file("/home/someOtherFolder\n"))
    assert prefix == ["/home/someOtherFolder", "/home/someFolder"]
    # Within one file too, and adding a directory again moves it to the front.
    assert prepend_path(prefix, ["/x", "/home/someFolder"]) == [
        "/home/someFolder",
        "/x",
        "/home/someOtherFolder",
    ]

"""Workflow commands in step output, parsed and acted on as GitHub's runner does."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from conveyor.runner.commands import Annotation, Command, CommandProcessor, parse_command
from conveyor.runner.envfiles import prepend_path
from conveyor.runner.process import run_process
from conveyor.runner.shell import resolve_shell, write_script

# What the conformance checker drops from step logs as command lines.
COMMAND_LINE = re.compile(r"^::[A-Za-z][A-Za-z0-9_-]*(?: [^\n]*?)?::")


def test_parse_name_properties_and_message() -> None:
    command = parse_command("::set-output name=zoo::zar")
    assert command == Command("set-output", {"name": "zoo"}, "zar")


def test_names_and_keys_are_case_insensitive() -> None:
    command = parse_command("::WARNING File=app.js,LINE=100,endLine=102::Hello")
    assert command is not None
    assert command.name == "warning"
    assert dict(command.properties) == {"file": "app.js", "line": "100", "endline": "102"}


def test_message_escapes_are_decoded_once() -> None:
    command = parse_command("::error::100%25 done%0Anext%0D%0Aline %250A %3A%2C")
    assert command is not None
    assert command.message == "100% done\nnext\r\nline %0A %3A%2C"


def test_property_values_also_decode_colon_and_comma() -> None:
    command = parse_command("::error title=a%3Ab%2Cc%25 %0A,file=x::m")
    assert command is not None
    assert command.properties == {"title": "a:b,c% \n", "file": "x"}


def test_message_may_contain_the_separator_and_properties_tolerate_junk() -> None:
    command = parse_command("  ::notice title=,=v,,line=3 ,bare::a::b")
    assert command is not None
    assert command.properties == {"line": "3"}
    assert command.message == "a::b"


@pytest.mark.parametrize("line", ["hello", ":: x", "::", "::no end", "::::x", "x ::debug::y", ""])
def test_lines_that_are_not_commands(line: str) -> None:
    assert parse_command(line) is None


def test_plain_output_and_unknown_commands_are_output() -> None:
    processor = CommandProcessor()
    assert processor.feed("hello world").is_output
    assert processor.feed("::std::vector<int>").is_output
    assert processor.feed("").is_output


def test_set_output_and_save_state() -> None:
    processor = CommandProcessor()
    result = processor.feed("::set-output name=zoo::zar%0Azip")
    assert not result.is_output and result.command is not None
    processor.feed("::save-state name=pid::1234")
    assert processor.outputs == {"zoo": "zar\nzip"}
    assert processor.state == {"pid": "1234"}
    assert not processor.failed


def test_command_without_required_name_fails_the_step() -> None:
    processor = CommandProcessor()
    result = processor.feed("::set-output::value")
    assert processor.failed and not result.is_output
    assert result.messages == (
        "##[error]Unable to process command '::set-output::value' successfully.",
        "##[error]Required field 'name' is missing in set-output command.",
    )


@pytest.mark.parametrize("line", ["::set-env name=foo::bar", "::add-path::/zip"])
def test_set_env_and_add_path_are_disabled_by_default(line: str) -> None:
    processor = CommandProcessor()
    result = processor.feed(line)
    assert processor.failed and not result.is_output
    assert "command is disabled" in result.messages[1]
    assert "ACTIONS_ALLOW_UNSECURE_COMMANDS" in result.messages[1]
    assert processor.env == {} and processor.path == []


def test_set_env_and_add_path_when_unsecure_commands_are_allowed() -> None:
    processor = CommandProcessor(allow_unsecure=True)
    processor.feed("::set-env name=foo::bar=baz")
    processor.feed("::add-path::/zip")
    processor.feed("::add-path::/zap")
    assert processor.env == {"foo": "bar=baz"}
    assert processor.path == ["/zip", "/zap"]
    assert not processor.failed


def test_add_mask_reports_the_value_to_register() -> None:
    processor = CommandProcessor()
    result = processor.feed("::add-mask::s3cr%0At")
    assert result.masks == ("s3cr\nt",) and not result.is_output
    assert processor.feed("::add-mask::   ").messages[0].startswith("##[warning]")
    assert processor.masks == ["s3cr\nt"]


def test_annotations_record_their_position() -> None:
    processor = CommandProcessor()
    processor.feed("::debug file=app.js,line=100,col=20::Hello debug!")
    warn = processor.feed("::warning file=app.js,line=100,col=20::Hello warning!")
    processor.feed(
        "::error file=app.js,line=1,endLine=3,col=30,endColumn=x,title=Bad%2C bad::Hello error!"
    )
    processor.feed("::notice::Just so you know")
    assert warn.messages == ("##[warning]Hello warning!",)
    assert processor.annotations == [
        Annotation("warning", "Hello warning!", file="app.js", line=100, col=20),
        Annotation(
            "error", "Hello error!", title="Bad, bad", file="app.js", line=1, end_line=3, col=30
        ),
        Annotation("notice", "Just so you know"),
    ]
    assert not processor.failed


def test_debug_messages_show_only_in_debug_mode() -> None:
    assert CommandProcessor().feed("::debug::hidden").messages == ()
    assert CommandProcessor(debug=True).feed("::debug::shown").messages == ("##[debug]shown",)


def test_groups_and_echo() -> None:
    processor = CommandProcessor()
    assert processor.feed("::group::Build").messages == ("##[group]Build",)
    assert processor.feed("::endgroup::").messages == ("##[endgroup]",)
    processor.feed("::echo::on")
    assert processor.feed("::set-output name=a::1").messages == ("::set-output name=a::1",)
    assert processor.feed("::add-mask::hidden").messages == ()
    processor.feed("::ECHO::OFF")
    assert processor.feed("::set-output name=a::2").messages == ()
    processor.feed("::echo::loud")
    assert processor.failed


def test_stop_commands_until_the_token_line() -> None:
    processor = CommandProcessor(allow_unsecure=True)
    assert not processor.feed("::stop-commands::my-end-token").is_output
    stopped = processor.feed("::set-env name=foo::baz")
    assert stopped.is_output and stopped.command is None
    assert processor.feed("::add-mask::nope").masks == ()
    assert processor.feed("::other-token::").is_output
    assert not processor.feed("::my-end-token::").is_output
    processor.feed("::set-env name=foo::baz")
    assert processor.env == {"foo": "baz"}
    assert processor.masks == []


def test_stop_commands_needs_a_token() -> None:
    processor = CommandProcessor()
    processor.feed("::stop-commands::")
    assert processor.failed
    assert processor.feed("::set-output name=a::1").command is not None


def run_step(
    tmp_path: Path, script: str, env: dict[str, str], path: list[str]
) -> tuple[list[str], CommandProcessor]:
    """Run one `run:` step with the default shell; fold env and PATH back like an executor."""
    processor = CommandProcessor(
        allow_unsecure=env.get("ACTIONS_ALLOW_UNSECURE_COMMANDS") == "true"
    )
    lines: list[str] = []

    def on_line(line: str) -> None:
        if processor.feed(line).is_output:
            lines.append(line)

    shell = resolve_shell(None)
    script_path = write_script(str(tmp_path), script, shell)
    process_env = {**env, "PATH": os.pathsep.join([*path, os.environ["PATH"]])}
    result = asyncio.run(
        run_process(
            shell.argv_for(script_path), cwd=str(tmp_path), env=process_env, on_line=on_line
        )
    )
    assert result.exit_code == 0, (script, lines)
    env.update(processor.env)
    path[:] = prepend_path(path, processor.path)
    return lines, processor


def test_commands_conformance_case(tmp_path: Path) -> None:
    """The steps of the `commands` case and the output lines it expects."""
    env = {"ACTIONS_ALLOW_UNSECURE_COMMANDS": "true", "HOME": str(tmp_path)}
    path: list[str] = []
    steps = [
        'echo "::set-env name=foo::bar"',
        "echo $foo | grep bar",
        'echo "::set-output name=zoo::zar"',
        'echo "::add-path::/zip"',
        "echo $PATH | grep /zip",
        'echo "::set-env name=cond_env::foo"',
        "echo $cond_env | grep foo",
        'echo "::debug file=app.js,line=100,col=20::Hello debug!"\n'
        'echo "::warning file=app.js,line=100,col=20::Hello warning!"\n'
        'echo "::error file=app.js,line=100,col=30::Hello error!"\n',
        'echo "::stop-commands::my-end-token" \n'
        'echo "::set-env name=foo::baz"\n'
        "echo $foo | grep bar\n"
        'echo "::my-end-token::"\n'
        'echo "::set-env name=foo::baz"\n',
        "echo $foo | grep baz",
    ]
    lines: list[str] = []
    outputs: dict[str, str] = {}
    for script in steps:
        step_lines, processor = run_step(tmp_path, script, env, path)
        lines += step_lines
        outputs.update(processor.outputs)
    assert outputs == {"zoo": "zar"}
    assert path == ["/zip"]
    # While stopped, `::set-env name=foo::baz` was printed as is (a command-shaped
    # line, which the checker leaves out); the PATH line is machine-specific.
    assert "::set-env name=foo::baz" in lines
    compared = [line for line in lines if not COMMAND_LINE.match(line) and "/zip" not in line]
    assert sorted(compared) == ["bar", "bar", "baz", "foo"]

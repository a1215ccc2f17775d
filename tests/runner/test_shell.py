"""Shell resolution and scripts run by real shells, as GitHub runs them on Linux."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from conveyor.errors import ExecutionError
from conveyor.runner.process import ProcessResult, run_process
from conveyor.runner.shell import resolve_shell, write_script


def run_script(
    tmp_path: Path, script: str, shell: str | None = None
) -> tuple[list[str], ProcessResult]:
    command = resolve_shell(shell)
    path = write_script(str(tmp_path), script, command)
    lines: list[str] = []
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    result = asyncio.run(
        run_process(command.argv_for(path), cwd=str(tmp_path), env=env, on_line=lines.append)
    )
    return lines, result


def fake_program(directory: Path, name: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def test_no_shell_anywhere_is_bash_with_errexit_only() -> None:
    command = resolve_shell(None)
    assert os.path.basename(command.argv[0]) == "bash"
    assert command.argv[1:] == ("-e", "{0}")
    assert command.extension == ".sh"
    assert command.argv_for("/t/s.sh")[1:] == ["-e", "/t/s.sh"]


def test_unspecified_shell_falls_back_to_sh_without_bash(tmp_path: Path) -> None:
    sh = fake_program(tmp_path, "sh")
    command = resolve_shell(None, path=str(tmp_path))
    assert command.argv == (sh, "-e", "{0}")


def test_explicit_bash_adds_pipefail_and_skips_profiles() -> None:
    command = resolve_shell("bash")
    assert command.argv[1:] == ("--noprofile", "--norc", "-eo", "pipefail", "{0}")


def test_step_shell_wins_over_default() -> None:
    assert resolve_shell("sh", default="bash").name == "sh"
    assert resolve_shell(None, default="sh").name == "sh"
    assert resolve_shell("  ", default="python").extension == ".py"


def test_python_falls_back_to_python3(tmp_path: Path) -> None:
    python3 = fake_program(tmp_path, "python3")
    command = resolve_shell("python", path=str(tmp_path))
    assert command.argv == (python3, "{0}")
    assert command.extension == ".py"


def test_pwsh_command_line_and_script_wrapping(tmp_path: Path) -> None:
    pwsh = fake_program(tmp_path, "pwsh")
    command = resolve_shell("pwsh", path=str(tmp_path))
    assert command.argv_for("/tmp/it's.ps1") == [pwsh, "-command", ". '/tmp/it''s.ps1'"]
    assert command.extension == ".ps1"
    text = Path(write_script(str(tmp_path), "Write-Output hi", command)).read_text()
    assert text.startswith("$ErrorActionPreference = 'stop'\nWrite-Output hi\n")
    assert "exit $LASTEXITCODE" in text


@pytest.mark.parametrize("shell", ["pwsh", "powershell"])
def test_missing_shell_program_is_named(tmp_path: Path, shell: str) -> None:
    with pytest.raises(ExecutionError, match=f"'{shell}' was not found"):
        resolve_shell(shell, path=str(tmp_path))


def test_custom_template_substitutes_the_script_path() -> None:
    command = resolve_shell("bash --noprofile -x {0} 'two words'")
    assert command.name == "custom"
    assert command.extension == ".sh"
    assert command.argv_for("/s")[1:] == ["--noprofile", "-x", "/s", "two words"]
    assert resolve_shell("cp {0} action.yml").extension == ""
    assert resolve_shell("cat -- prefix{0}suffix").argv_for("/s")[-1] == "prefix/ssuffix"


@pytest.mark.parametrize(
    ("shell", "fragment"),
    [
        ("bash -x", "nor a template with {0}"),
        ("zsh-that-is-not-there {0}", "'zsh-that-is-not-there' was not found"),
        ("bash 'unclosed {0}", "cannot be parsed"),
        ("cmd", "only available on Windows"),
    ],
)
def test_bad_shells_are_clear_errors(shell: str, fragment: str) -> None:
    with pytest.raises(ExecutionError, match=fragment.replace("{", r"\{").replace("}", r"\}")):
        resolve_shell(shell)


def test_write_script_rewrites_one_private_file(tmp_path: Path) -> None:
    command = resolve_shell("bash")
    first = write_script(str(tmp_path), "echo héllo, a longer first script\n", command)
    assert first.endswith(".sh")
    assert Path(first).read_text(encoding="utf-8") == "echo héllo, a longer first script\n"
    os.chmod(first, 0o644)  # a step made it readable by everyone
    second = write_script(str(tmp_path), "echo again\n", command)
    assert second == first
    assert Path(second).read_text(encoding="utf-8") == "echo again\n"
    assert stat.S_IMODE(os.stat(second).st_mode) == 0o700


def test_write_script_does_not_follow_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    (tmp_path / "step.sh").symlink_to(target)
    with pytest.raises(ExecutionError, match="cannot write"):
        write_script(str(tmp_path), "true", resolve_shell("bash"))
    assert target.read_text() == "keep me"


def test_write_script_into_missing_directory_is_an_execution_error(tmp_path: Path) -> None:
    with pytest.raises(ExecutionError, match="cannot write"):
        write_script(str(tmp_path / "missing"), "true", resolve_shell("sh"))


def test_extra_shells_conformance(tmp_path: Path) -> None:
    """The extra-shells case: which shells stop on errors and pipe failures."""
    pipe = 'false | true\necho "after pipe ({})"\n'
    errexit = 'false\necho "after false ({})"\n'
    explicit_lines, explicit = run_script(tmp_path, pipe.format("explicit bash"), "bash")
    default_lines, default = run_script(tmp_path, pipe.format("default shell"))
    _, errexit_result = run_script(tmp_path, errexit.format("default shell"))
    custom_lines, custom = run_script(tmp_path, errexit.format("custom bash {0}"), "bash {0}")
    sh_lines, sh = run_script(tmp_path, errexit.format("sh"), "sh")
    py_lines, py = run_script(
        tmp_path, 'import sys\nprint("python says", 6 * 7)\nsys.exit(0)\n', "python"
    )
    fail_lines, py_fail = run_script(
        tmp_path, 'import sys\nprint("python exits 3")\nsys.exit(3)\n', "python"
    )
    assert (explicit.exit_code, explicit_lines) == (1, [])
    assert (default.exit_code, default_lines) == (0, ["after pipe (default shell)"])
    assert errexit_result.exit_code == 1
    assert (custom.exit_code, custom_lines) == (0, ["after false (custom bash {0})"])
    assert (sh.exit_code, sh_lines) == (1, [])
    assert (py.exit_code, py_lines) == (0, ["python says 42"])
    assert (py_fail.exit_code, fail_lines) == (3, ["python exits 3"])


def test_sh_is_not_bash_and_bash_is(tmp_path: Path) -> None:
    """The shells-sh and shells-bash cases."""
    is_sh = 'if [ -z ${BASH+x} ]; then\n  echo "I\'m sh!"\nelse\n  exit 1\nfi\n'
    is_bash = 'if [[ -n "$BASH" ]]; then echo "I\'m $BASH!"; else exit 1; fi\n'
    assert run_script(tmp_path, is_sh, "sh")[0] == ["I'm sh!"]
    for shell in (None, "bash"):
        lines, result = run_script(tmp_path, is_bash, shell)
        assert result.exit_code == 0
        assert lines == [f"I'm {resolve_shell(shell).argv[0]}!"]


def test_python_shell_runs_the_script(tmp_path: Path) -> None:
    """The shells-python case: prints a version like 3.11.7."""
    lines, result = run_script(
        tmp_path, "import platform\nprint(platform.python_version())\n", "python"
    )
    assert result.exit_code == 0
    assert len(lines) == 1 and lines[0].count(".") == 2

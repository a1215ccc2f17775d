"""`conveyor validate`: diagnostics with their source line, a summary, and the exit status."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.workflow.validate_cli import validate_paths

GOOD = "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo hi\n"
BAD = "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ nope() }}\n"


def run(paths: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = validate_paths(paths, out, err)
    return status, out.getvalue(), err.getvalue()


def test_valid_file_exits_zero(tmp_path: Path) -> None:
    (tmp_path / "ci.yml").write_text(GOOD)
    assert run([str(tmp_path / "ci.yml")]) == (0, "1 file checked: 1 valid\n", "")


def test_invalid_file_prints_position_source_line_and_marker(tmp_path: Path) -> None:
    path = tmp_path / "ci.yml"
    path.write_text(BAD)
    status, out, err = run([str(path)])
    assert status == 2
    assert err == (
        f"{path}:6:23: unknown function 'nope' [unknown-function]\n"
        "          - run: echo ${{ nope() }}\n"
        "                          ^\n"
    )
    assert out == "1 file checked: 0 valid, 1 invalid (1 problem)\n"


def test_directory_expands_to_its_yaml_files(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(BAD)
    (tmp_path / "notes.txt").write_text("not a workflow")
    status, out, err = run([str(tmp_path)])
    assert status == 2
    assert err.startswith(f"{tmp_path / 'b.yaml'}:6:23:")
    assert out == "2 files checked: 1 valid, 1 invalid (1 problem)\n"


def test_action_files_are_checked_as_actions(tmp_path: Path) -> None:
    path = tmp_path / "action.yml"
    path.write_text("runs:\n  using: composite\n  steps:\n    - run: echo\n")
    status, _, err = run([str(path)])
    assert status == 2
    assert err.startswith(f"{path}:4:7: a run step in a composite action needs 'shell'")


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    assert run([str(missing)]) == (
        2,
        "",
        f"conveyor validate: {missing}: no such file or directory\n",
    )


def test_directory_without_workflows(tmp_path: Path) -> None:
    status, _, err = run([str(tmp_path)])
    assert status == 2
    assert "no .yml or .yaml files" in err


def test_undecodable_file_is_reported_without_a_source_line(tmp_path: Path) -> None:
    path = tmp_path / "ci.yml"
    path.write_bytes(b"on: push\n\xff\xfe\n")
    status, _, err = run([str(path)])
    assert status == 2
    assert err == f"{path}:2:1: file is not valid UTF-8 (byte 0xff) [encoding]\n"


def test_huge_source_lines_are_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "ci.yml"
    path.write_text("on: " + "x" * 10_000 + "\n")
    _, _, err = run([str(path)])
    assert "x" * 1000 not in err


def test_console_script_end_to_end(tmp_path: Path) -> None:
    script = shutil.which("conveyor", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the conveyor console script is not installed")
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "ci.yml").write_text(GOOD)
    done = subprocess.run([script, "validate"], cwd=tmp_path, capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "1 file checked: 1 valid\n", "")
    (workflows / "bad.yml").write_text(BAD)
    done = subprocess.run([script, "validate"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith(".github/workflows/bad.yml:6:23: unknown function 'nope'")

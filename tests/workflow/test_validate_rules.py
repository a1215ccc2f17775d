"""Each rule's exact `file:line:col: message [code]`, from the data files in cases/.

A file under cases/invalid/ lists the diagnostics it must produce, in order,
as trailing `# expect: ...` comments; a file under cases/valid/ must load clean.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import WorkflowError
from conveyor.workflow.parse import load_workflow
from conveyor.workflow.validate import RULES

CASES = Path(__file__).parent / "cases"
EXPECT = "# expect: "


def _files(kind: str) -> list[Path]:
    return sorted((CASES / kind).glob("*.yml"))


def _diagnostics(path: Path) -> list[str]:
    try:
        load_workflow(str(path), display_path=path.name)
    except WorkflowError as error:
        return [str(d) for d in error.diagnostics]
    return []


@pytest.mark.parametrize("path", _files("invalid"), ids=lambda p: p.stem)
def test_invalid_case_reports_exactly_its_diagnostics(path: Path) -> None:
    lines = path.read_text().splitlines()
    expected = [line.removeprefix(EXPECT) for line in lines if line.startswith(EXPECT)]
    assert expected, f"{path.name} lists no '{EXPECT}' lines"
    assert _diagnostics(path) == expected


@pytest.mark.parametrize("path", _files("valid"), ids=lambda p: p.stem)
def test_valid_case_loads_clean(path: Path) -> None:
    assert _diagnostics(path) == []


def test_every_rule_code_is_exercised_by_a_case() -> None:
    text = "\n".join(path.read_text() for path in _files("invalid"))
    codes = [
        "invalid-job-id",
        "missing-key",
        "unknown-need",
        "needs-cycle",
        "step-run-and-uses",
        "duplicate-step-id",
        "invalid-step-id",
        "expression-syntax",
        "unknown-function",
        "matrix-too-large",
        "invalid-matrix",
        "invalid-glob",
        "invalid-cron",
        "unknown-key",
        "wrong-type",
        "yaml-syntax",
        "duplicate-key",
        "empty-workflow",
        "unknown-event",
        "filter-conflict",
    ]
    assert [code for code in codes if f"[{code}]" not in text] == []
    assert len(RULES) == 9

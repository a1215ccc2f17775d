"""The conformance corpus: every workflow and action loads clean, every invalid case is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.errors import WorkflowError
from conveyor.workflow.parse import load_action, load_workflow

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance" / "cases"


def _cases() -> list[Path]:
    return sorted(CORPUS.iterdir()) if CORPUS.is_dir() else []


def _invalid(case: Path) -> bool:
    expected = case / "expected.json"
    return expected.is_file() and json.loads(expected.read_text()).get("invalid") is True


def _workflows(invalid: bool) -> list[Path]:
    return [
        path
        for case in _cases()
        if _invalid(case) == invalid
        for path in sorted((case / "repo" / ".github" / "workflows").glob("*.y*ml"))
    ]


def _actions() -> list[Path]:
    return [path for case in _cases() for path in sorted((case / "repo").rglob("action.y*ml"))]


def _id(path: Path) -> str:
    return str(path.relative_to(CORPUS))


pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="conformance corpus not present")


@pytest.mark.parametrize("path", _workflows(invalid=False), ids=_id)
def test_valid_workflow_loads_clean(path: Path) -> None:
    workflow = load_workflow(str(path))
    assert workflow.jobs


@pytest.mark.parametrize("path", _actions(), ids=_id)
def test_action_loads_clean(path: Path) -> None:
    assert load_action(str(path)).using == "composite"


@pytest.mark.parametrize("path", _workflows(invalid=True), ids=_id)
def test_invalid_workflow_is_refused_with_a_position(path: Path) -> None:
    with pytest.raises(WorkflowError) as caught:
        load_workflow(str(path))
    for diagnostic in caught.value.diagnostics:
        assert diagnostic.span.file == str(path)
        assert diagnostic.span.line >= 1 and diagnostic.span.col >= 1


def test_corpus_has_both_kinds() -> None:
    assert len(_workflows(invalid=False)) > 50
    assert len(_workflows(invalid=True)) >= 8

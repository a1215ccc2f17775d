"""Rule: a matrix written without expressions expands to at most 256 jobs, as on GitHub."""

from __future__ import annotations

from collections.abc import Iterator

from conveyor.errors import Diagnostic
from conveyor.workflow.matrix import MAX_COMBINATIONS, MatrixError, count_static
from conveyor.workflow.model import Workflow
from conveyor.workflow.rules import Document


def matrix_size(doc: Document) -> Iterator[Diagnostic]:
    """matrix-too-large, invalid-matrix: expand each static matrix and count its jobs."""
    if not isinstance(doc.model, Workflow):
        return
    for job in doc.model.jobs.values():
        if job.strategy is None or not _well_formed(job.strategy.matrix):
            continue  # expressions decide its shape, or loading reported it
        node = doc.node("jobs", job.id, "strategy", "matrix")
        span = node.span if node is not None else job.span
        try:
            count = count_static(job.strategy.matrix)
        except MatrixError as error:
            # expand() refuses both oversized products and oversized results with "more than".
            code = "matrix-too-large" if "more than" in str(error) else "invalid-matrix"
            yield Diagnostic(span, code, str(error))
            continue
        if count is not None and count > MAX_COMBINATIONS:  # expand() already refuses these
            yield Diagnostic(span, "matrix-too-large", f"the matrix has {count} combinations")


def _well_formed(matrix: object) -> bool:
    """Vectors are lists; include and exclude are lists of mappings."""
    if not isinstance(matrix, dict):
        return False
    for key, value in matrix.items():
        if not isinstance(value, list):
            return False
        if key in ("include", "exclude") and not all(isinstance(v, dict) for v in value):
            return False
    return True

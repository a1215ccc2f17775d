"""What `conveyor run` prints for people (or, with --json, one JSON object a line)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from conveyor.engine.records import JobRecord
from conveyor.errors import WorkflowError
from conveyor.runner.assignment import StepReport

_COLORS = (36, 35, 33, 32, 34, 91, 96, 95, 93, 92, 94)
_MARKS = {"success": "✓", "failure": "✗", "skipped": "-", "cancelled": "⊘"}
_RESULT_COLORS = {"success": 32, "failure": 31, "cancelled": 33, "skipped": 90}


class Console:
    """Live output: job-prefixed lines, a line per step result, a summary table."""

    def __init__(
        self,
        out: TextIO = sys.stdout,
        err: TextIO = sys.stderr,
        *,
        color: bool = False,
        json_lines: bool = False,
    ) -> None:
        self.out, self.err = out, err
        self.color = color
        self.json_lines = json_lines
        self._colors: dict[str, int] = {}

    def paint(self, text: str, code: int) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def job_printer(self, job: JobRecord, report_id: str) -> JobPrinter:
        code = self._colors.setdefault(report_id, _COLORS[len(self._colors) % len(_COLORS)])
        return JobPrinter(self, job, report_id, code)

    def emit(self, record: Mapping[str, Any]) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def invalid(self, exc: WorkflowError) -> None:
        for d in exc.diagnostics:
            source = _read(d.span.file)
            self.err.write(d.render(source) + "\n")
        self.err.flush()

    def error(self, message: str) -> None:
        self.err.write(f"conveyor: {message}\n")
        self.err.flush()

    def summary(
        self, report: Mapping[str, Any], step_summaries: Sequence[tuple[str, str]] = ()
    ) -> None:
        """The table of jobs and their results, then what steps wrote to their summaries."""
        if self.json_lines:
            self.emit(
                {
                    "type": "summary",
                    "conclusion": report["conclusion"],
                    "step_summaries": [{"job": j, "markdown": m} for j, m in step_summaries],
                    "jobs": [
                        {
                            "id": j["id"],
                            "name": j["name"],
                            "conclusion": j["conclusion"],
                            "reason": j.get("reason"),
                        }
                        for j in report["jobs"]
                    ],
                }
            )
            return
        jobs = report["jobs"]
        width = max([len(j["name"]) for j in jobs] + [3])
        lines = ["", f"{'JOB':<{width}}  RESULT"]
        for j in jobs:
            result = str(j["conclusion"])
            # Why a job ended as it did when it ran no step that says (its matrix failed...).
            why = f": {j['reason']}" if j.get("reason") and result != "success" else ""
            lines.append(
                f"{j['name']:<{width}}  "
                f"{self.paint(_MARKS.get(result, '?') + ' ' + result, _RESULT_COLORS.get(result, 0))}"
                f"{why}"
            )
        conclusion = str(report["conclusion"])
        lines.append(f"run {self.paint(conclusion, _RESULT_COLORS.get(conclusion, 0))}")
        for job, markdown in step_summaries:
            lines.append(f"\n── summary of {job} ──")
            lines.append(markdown.rstrip("\n"))
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()


class JobPrinter:
    """Prints one job's lines, prefixed with its (coloured) name."""

    def __init__(self, console: Console, job: JobRecord, report_id: str, code: int) -> None:
        self._c = console
        self._job = job
        self._id = report_id
        self._prefix = console.paint(f"[{job.name}]", code)

    def line(self, step_index: int | None, text: str) -> None:
        if self._c.json_lines:
            self._c.emit(
                {
                    "type": "log",
                    "job": self._id,
                    "name": self._job.name,
                    "step": step_index,
                    "line": text,
                }
            )
            return
        self._c.out.write(f"{self._prefix} {text}\n")

    def step(self, report: StepReport) -> None:
        if self._c.json_lines:
            self._c.emit(
                {
                    "type": "step",
                    "job": self._id,
                    "name": self._job.name,
                    "step": report.index,
                    "title": report.name,
                    "outcome": report.outcome,
                    "conclusion": report.conclusion,
                }
            )
            return
        mark = self._c.paint(_MARKS.get(report.outcome, "?"), _RESULT_COLORS.get(report.outcome, 0))
        note = " (continue-on-error)" if report.outcome != report.conclusion else ""
        self._c.out.write(f"{self._prefix} {mark} {report.name}{note}\n")
        self._c.out.flush()


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None

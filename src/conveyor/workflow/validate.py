"""Validation: the named rules every workflow and action passes, and their stable codes.

Loading (`conveyor.workflow.parse`) reports what does not fit the syntax;
the rules here report what is wrong in meaning. Every diagnostic carries one
of these codes, which the CLI, the UI and the API show:

    yaml-syntax        the file is not YAML (or uses an unsupported tag or alias)
    yaml-limit         the file is too large, too deep, or its aliases expand too far
    encoding           the file is not UTF-8
    io-error           the file cannot be read
    duplicate-key      a mapping repeats a key
    empty-workflow     the file holds nothing (empty-action likewise)
    unknown-key        a key the syntax does not allow there (the message lists the allowed ones)
    unknown-event      `on:` names an event GitHub does not have
    wrong-type         a value of the wrong kind (a mapping where a string goes, ...)
    missing-key        a required key is absent (`on`, `jobs`, `runs-on`, `steps`, ...)
    filter-conflict    a filter and its `-ignore` twin on one event
    invalid-job-id     a job id GitHub would refuse                      (rule job_ids)
    unknown-need       `needs:` names no job of the workflow             (rule needs)
    needs-cycle        jobs need each other in a cycle, which is named   (rule needs)
    step-run-and-uses  a step with both `run` and `uses`, or neither     (rule run_or_uses)
    duplicate-step-id  two steps of one job share an id                  (rule step_ids)
    invalid-step-id    a step id GitHub would refuse                     (rule step_ids)
    expression-syntax  a `${{ }}` (or an `if:`) does not parse           (rule expressions)
    unknown-function   an expression calls a function that does not exist (rule expressions)
    matrix-too-large   a static matrix expands to more than 256 jobs     (rule matrix_size)
    invalid-matrix     a static matrix cannot be expanded                (rule matrix_size)
    invalid-glob       a branch, tag or path filter does not compile     (rule globs)
    invalid-cron       a schedule is not a valid cron expression         (rule crons)
"""

from __future__ import annotations

from conveyor.errors import Diagnostic
from conveyor.workflow.rules import Document, Rule
from conveyor.workflow.rules.expressions import expressions
from conveyor.workflow.rules.filters import crons, globs
from conveyor.workflow.rules.jobs import job_contents, job_ids, needs
from conveyor.workflow.rules.matrix import matrix_size
from conveyor.workflow.rules.steps import run_or_uses, step_ids

RULES: tuple[Rule, ...] = (
    job_ids,
    job_contents,
    needs,
    run_or_uses,
    step_ids,
    expressions,
    matrix_size,
    globs,
    crons,
)

__all__ = ["RULES", "Document", "check"]


def check(doc: Document, rules: tuple[Rule, ...] = RULES) -> list[Diagnostic]:
    """Every diagnostic the rules find, each once (aliased nodes are visited more than once)."""
    found: dict[Diagnostic, None] = {}
    for rule in rules:
        found.update(dict.fromkeys(rule(doc)))
    return list(found)

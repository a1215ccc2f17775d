"""The scheduler: queues, skips and concludes jobs as the jobs they need end.

It holds no state of its own: `advance(run_id)` reads the run's jobs from the
store and makes every decision that is due (evaluating job `if:` and the
matrix), each one a compare-and-set transition. Two schedulers advancing the
same run at once cannot queue a job twice: the loser's transition conflicts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.engine.contexts import needs_context, strategy_context
from conveyor.engine.records import JobInstance, JobRecord, RunRecord
from conveyor.engine.runplan import CallSite, PlannedJob, group_members
from conveyor.engine.states import Conclusion, JobStatus, RunStatus, is_terminal
from conveyor.engine.store import Store
from conveyor.engine.templating import render_structure
from conveyor.errors import Conflict, ConveyorError, ExpressionSyntaxError
from conveyor.expr import (
    Environment,
    condition,
    context_names,
    evaluate,
    render_value,
    template_contexts,
    to_boolean,
    to_string,
)
from conveyor.workflow.matrix import MatrixError, display_suffix, expand, max_parallel
from conveyor.workflow.triggers import dispatch_inputs


@dataclass(frozen=True)
class RunContext:
    """What the scheduler knows of a run beyond the store: its plan and base contexts."""

    plan: Sequence[PlannedJob]
    github: Mapping[str, Any]
    inputs: Mapping[str, Any] = field(default_factory=dict)
    vars: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    """The run's jobs as an `advance` last read them, and whether the run has concluded.

    When the advance queued a job, the rows are those read before its decisions
    (reading them again would only show the run going on).
    """

    rows: Sequence[JobRecord]
    concluded: bool


class Scheduler:
    """Advances runs; stateless between calls."""

    def __init__(
        self,
        store: Store,
        context_of: Callable[[RunRecord], Awaitable[RunContext]],
        *,
        match_labels: bool = True,
    ) -> None:
        """`match_labels=False` queues jobs for any runner (a local run ignores `runs-on`)."""
        self._store = store
        self._context_of = context_of
        self._match_labels = match_labels

    async def advance(self, run_id: str) -> Progress:
        """Make every decision that is due for the run, and conclude it when all jobs ended."""
        run = await self._store.get_run(run_id)
        rows = await self._store.list_jobs(run_id)
        if is_terminal_run(run.status):
            return Progress(rows, True)
        if await self._waits_for_group(run, rows):
            return Progress(rows, False)
        try:
            ctx = await self._context_of(run)
        except ConveyorError as exc:
            return await self._abandon(run, rows, f"cannot plan the run: {exc}")
        queued = cancelled = False
        while True:
            view = _RunView(ctx, rows)
            decided = False  # the rows are stale once this pass has decided anything
            ended = False  # a job this pass skipped, failed or cancelled may let others go
            for planned in view.ctx.plan:
                pending = [r for r in view.rows_of(planned.key) if r.status == JobStatus.PENDING]
                if not pending or not view.ready(planned):
                    continue
                with contextlib.suppress(Conflict):  # another scheduler decided first
                    if await self._decide(view, planned, pending[0]):
                        queued = True
                    else:
                        ended = True
                decided = True
            if await self._fail_fast(view):
                cancelled = ended = True
            if not ended:
                break
            rows = await self._store.list_jobs(run_id)
        if queued and not cancelled:  # a job waits for a runner: the run goes on
            return Progress(rows, False)
        if decided:
            rows = await self._store.list_jobs(run_id)
        if not rows or not all(is_terminal(r.status) for r in rows):
            return Progress(rows, False)
        with contextlib.suppress(Conflict):  # concluded by another scheduler
            await self._store.complete_run(run_id, _run_conclusion(rows))
        return Progress(rows, True)

    async def release(self, run_id: str) -> None:
        """The run has ended: advance the runs of its concurrency group that waited for it."""
        waiting = await unfinished_in_group(self._store, await self._store.get_run(run_id))
        if waiting:  # the oldest is the one whose turn it is; the others wait behind it
            await self.advance(waiting[-1].id)

    async def _waits_for_group(self, run: RunRecord, rows: Sequence[JobRecord]) -> bool:
        """Whether the run must not start yet: an older run of its concurrency group has not ended.

        Only a run none of whose jobs has moved can be waiting; once one has, the
        run holds the group until it ends (runs created later are all newer).
        """
        if run.concurrency_group is None or any(r.status != JobStatus.PENDING for r in rows):
            return False
        older = await self._store.list_runs(
            run.tenant_id,
            concurrency_group=run.concurrency_group,
            status=_UNFINISHED,
            after=run.id,
            limit=1,
        )
        return bool(older)

    async def _abandon(self, run: RunRecord, rows: Sequence[JobRecord], reason: str) -> Progress:
        """The run's workflows cannot be read any more: fail what has not started."""
        for row in rows:
            if row.status == JobStatus.PENDING:
                with contextlib.suppress(Conflict):
                    await self._store.fail_pending(row.id, reason)
        rows = await self._store.list_jobs(run.id)
        if rows and all(is_terminal(r.status) for r in rows):
            with contextlib.suppress(Conflict):
                await self._store.complete_run(run.id, _run_conclusion(rows))
            return Progress(rows, True)
        return Progress(rows, False)

    async def _decide(self, view: _RunView, planned: PlannedJob, row: JobRecord) -> bool:
        """Carry over, skip, fail or queue the pending job; -> whether it was queued."""
        carry = row.spec.get("carry")
        if isinstance(carry, Mapping):  # it succeeded in the previous attempt: not run again
            outputs = {str(k): str(v) for k, v in (carry.get("outputs") or {}).items()}
            await self._store.carry_over_job(row.id, Conclusion(carry["conclusion"]), outputs)
            return False
        try:
            if not view.should_run(planned):
                await self._store.skip_job(row.id, "condition not met")
                return False
            instances = view.instances(planned)
            if not self._match_labels:
                instances = [replace(i, labels=()) for i in instances]
        except (ConveyorError, MatrixError) as exc:
            await self._store.fail_pending(row.id, str(exc))
            return False
        await self._store.queue_job(row.id, instances)
        return True

    async def _fail_fast(self, view: _RunView) -> bool:
        """A failed matrix instance cancels its unfinished siblings (unless fail-fast: false)."""
        changed = False
        for planned in view.ctx.plan:
            rows = view.rows_of(planned.key)
            if len(rows) < 2 or not any(r.conclusion == Conclusion.FAILURE for r in rows):
                continue
            if not view.fail_fast(planned):
                continue
            for r in rows:
                if is_terminal(r.status) or r.cancel_requested:
                    continue
                with contextlib.suppress(Conflict):
                    await self._store.cancel_job(r.id, "fail-fast: a matrix sibling failed")
                    changed = True
        return changed


def queued_at_creation(ctx: RunContext) -> dict[str, list[JobInstance]] | None:
    """The instances of the run's root jobs, when creating the run may queue them all.

    What `advance` would decide first for a new run, made before the run's
    creation commits. None when a root job is not simply queued (its `if:`
    skips it, or its matrix or labels fail): those decisions, and what follows
    from them, stay the scheduler's.
    """
    view = _RunView(ctx, ())
    roots: dict[str, list[JobInstance]] = {}
    for planned in ctx.plan:
        if not view.ready(planned):  # it needs another job
            continue
        try:
            if not view.should_run(planned):
                return None
            roots[planned.key] = view.instances(planned)
        except (ConveyorError, MatrixError):
            return None
    return roots


def creation_reads_github(plan: Sequence[PlannedJob]) -> bool:
    """Whether `queued_at_creation` may read the `github` context (the run's number is in it
    and nowhere else): through a root job's `if:`, name, `runs-on` or strategy, or a call
    of a reusable workflow (its caller's `with:` and `if:`). An expression that cannot be
    parsed counts as reading it."""
    for planned in plan:
        if planned.need_groups:
            continue  # not a root: decided later, by the scheduler
        if planned.call is not None:
            return True
        job = planned.job
        strategy = job.strategy
        try:
            if job.if_ is not None and "github" in context_names(condition(job.if_)):
                return True
            raw = [job.name, job.runs_on]
            if strategy is not None:
                raw += [strategy.matrix, strategy.fail_fast, strategy.max_parallel]
            if any("github" in template_contexts(value) for value in raw):
                return True
        except ExpressionSyntaxError:
            return True
    return False


_UNFINISHED = (RunStatus.QUEUED, RunStatus.IN_PROGRESS)
_PAGE = 50


async def unfinished_in_group(
    store: Store, run: RunRecord, *, older_only: bool = False
) -> list[RunRecord]:
    """The queued and in-progress runs of `run`'s concurrency group, newest first.

    `older_only` keeps those created before `run`.
    """
    if run.concurrency_group is None:
        return []
    found: list[RunRecord] = []
    while True:
        page = await store.list_runs(
            run.tenant_id,
            concurrency_group=run.concurrency_group,
            status=_UNFINISHED,
            after=found[-1].id if found else run.id if older_only else None,
            limit=_PAGE,
        )
        found.extend(page)
        if len(page) < _PAGE:
            return found


def is_terminal_run(status: str) -> bool:
    return str(status) == "completed"


def _run_conclusion(rows: Sequence[JobRecord]) -> Conclusion:
    conclusions = {r.conclusion for r in rows}
    if Conclusion.FAILURE in conclusions:
        return Conclusion.FAILURE
    if Conclusion.CANCELLED in conclusions:
        return Conclusion.CANCELLED
    return Conclusion.SUCCESS


class _RunView:
    """One consistent read of a run's jobs, with the derived group results."""

    def __init__(self, ctx: RunContext, rows: Sequence[JobRecord]) -> None:
        self.ctx = ctx
        self.by_key: dict[str, list[JobRecord]] = {}
        for r in rows:
            self.by_key.setdefault(r.key, []).append(r)
        self.planned = {p.key: p for p in ctx.plan}
        self.calls = {c.key: c for p in ctx.plan for c in _chain(p.call)}

    def rows_of(self, key: str) -> list[JobRecord]:
        return self.by_key.get(key, [])

    def result(self, group: str) -> str | None:
        """success | failure | cancelled | skipped, or None while any member runs."""
        members = group_members(group, self.by_key)
        rows = [r for k in members for r in self.by_key[k]]
        if not rows or any(not is_terminal(r.status) for r in rows):
            return None
        found = {str(r.conclusion) for r in rows}
        for result in ("failure", "cancelled", "success"):
            if result in found:
                return result
        return "skipped"

    def outputs(self, group: str) -> dict[str, str]:
        if group in self.calls:
            return self._call_outputs(self.calls[group])
        merged: dict[str, str] = {}
        for r in self.by_key.get(group, []):
            merged.update(r.outputs)
        return merged

    def ready(self, planned: PlannedJob) -> bool:
        return all(self.result(g) is not None for g in planned.need_groups)

    def needs(self, groups: Sequence[str], prefix: str) -> dict[str, Any]:
        names = [g[len(prefix) :] for g in groups]
        results = {g[len(prefix) :]: self.result(g) or "" for g in groups}
        outputs = {g[len(prefix) :]: self.outputs(g) for g in groups}
        return needs_context(names, results, outputs)

    def upstream_status(self, groups: Sequence[str]) -> str:
        """What success()/failure() see: failures and cancellations count transitively."""
        seen: set[str] = set()
        stack = list(groups)
        direct = {self.result(g) for g in groups}
        found: set[str | None] = set(direct)
        while stack:
            g = stack.pop()
            if g in seen:
                continue
            seen.add(g)
            found.add(self.result(g))
            for key in group_members(g, self.by_key):
                if key in self.planned:
                    stack.extend(self.planned[key].need_groups)
        if "cancelled" in found:
            return "cancelled"
        if "failure" in found:
            return "failure"
        return "skipped" if "skipped" in direct else "success"

    def base_contexts(self, planned: PlannedJob, needs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "github": dict(self.ctx.github),
            "inputs": self.inputs_for(planned.call),
            "vars": dict(self.ctx.vars),
            "needs": dict(needs),
        }

    def should_run(self, planned: PlannedJob) -> bool:
        for site in reversed(list(_chain(planned.call))):
            if site.job.if_ is not None and not self._call_should_run(site):
                return False
        needs = self.needs(planned.need_groups if planned.job.needs else (), planned.prefix)
        env = Environment(
            contexts=self.base_contexts(planned, needs),
            status=self.upstream_status(planned.need_groups),
        )
        return to_boolean(evaluate(condition(planned.job.if_), env))

    def _call_should_run(self, site: CallSite) -> bool:
        prefix = site.key.rsplit("/", 1)[0] + "/" if "/" in site.key else ""
        env = Environment(
            contexts={
                "github": dict(self.ctx.github),
                "inputs": self.inputs_for(site.parent),
                "vars": dict(self.ctx.vars),
                "needs": self.needs(site.need_groups, prefix),
            },
            status=self.upstream_status(site.need_groups),
        )
        return to_boolean(evaluate(condition(site.job.if_), env))

    def inputs_for(self, call: CallSite | None) -> dict[str, Any]:
        """The `inputs` context: the run's, or what a caller passed with `with:`."""
        if call is None:
            return dict(self.ctx.inputs)
        prefix = call.key.rsplit("/", 1)[0] + "/" if "/" in call.key else ""
        env = Environment(
            contexts={
                "github": dict(self.ctx.github),
                "inputs": self.inputs_for(call.parent),
                "vars": dict(self.ctx.vars),
                "needs": self.needs(call.need_groups, prefix),
            }
        )
        given = render_value(dict(call.job.with_), env)
        trigger = call.called.on["workflow_call"]
        specs = {
            name: replace(spec, default=render_value(spec.default, env))
            for name, spec in trigger.inputs.items()
        }
        return dispatch_inputs(replace(trigger, inputs=specs), given)

    def fail_fast(self, planned: PlannedJob) -> bool:
        strategy = planned.job.strategy
        if strategy is None:
            return True
        value = strategy.fail_fast
        if isinstance(value, str):
            value = render_value(value, Environment(contexts={"github": dict(self.ctx.github)}))
        return to_boolean(value)

    def instances(self, planned: PlannedJob) -> list[JobInstance]:
        job = planned.job
        needs = self.needs(planned.need_groups if job.needs else (), planned.prefix)
        contexts = self.base_contexts(planned, needs)
        env = Environment(contexts=contexts)
        combos: list[dict[str, Any]] = [{}]
        parallel: int | None = None
        if job.strategy is not None and job.strategy.matrix is not None:
            matrix = render_structure(job.strategy.matrix, env)
            if not isinstance(matrix, Mapping):
                raise MatrixError(f"strategy.matrix must be a mapping, got {to_string(matrix)!r}")
            combos = expand(matrix) or [{}]
            if job.strategy.max_parallel is not None:
                parallel = max_parallel(render_value(job.strategy.max_parallel, env))
        base_name = job.name if job.name is not None else planned.key.rsplit("/", 1)[-1]
        out: list[JobInstance] = []
        for i, combo in enumerate(combos):
            matrix_ctx = combo or None
            name_env = Environment(contexts={**contexts, "matrix": dict(combo)})
            name = to_string(render_value(base_name, name_env))
            if combo and not (isinstance(job.name, str) and "${{" in job.name):
                name = f"{name} {display_suffix(combo)}"
            if planned.call is not None:
                name = f"{planned.call.job.name or planned.report_id} / {name}"
            spec = {
                "needs": needs,
                "inputs": contexts["inputs"],
                "strategy": strategy_context(self.fail_fast(planned), parallel, i, len(combos)),
            }
            labels = runner_labels(render_value(job.runs_on, name_env))
            out.append(JobInstance(name=name, matrix=matrix_ctx, spec=spec, labels=labels))
        return out

    def _call_outputs(self, call: CallSite) -> dict[str, str]:
        trigger = call.called.on.get("workflow_call")
        if trigger is None or not trigger.outputs:
            return {}
        jobs = {
            key[len(call.key) + 1 :]: {
                "result": self.result(key) or "",
                "outputs": self.outputs(key),
            }
            for key in self.by_key
            if key.startswith(call.key + "/") and "/" not in key[len(call.key) + 1 :]
        }
        env = Environment(contexts={"jobs": jobs, "github": dict(self.ctx.github)})
        return {
            name: to_string(render_value(spec.value, env)) for name, spec in trigger.outputs.items()
        }


def job_contexts(ctx: RunContext, spec: Mapping[str, Any]) -> dict[str, Any]:
    """The contexts a queued job runs with: the run's, and what the scheduler put in its spec."""
    return {
        "github": dict(ctx.github),
        "vars": dict(ctx.vars),
        "inputs": spec.get("inputs", {}),
        "needs": spec.get("needs", {}),
        "strategy": spec.get("strategy", {}),
    }


def call_secrets(ctx: RunContext, call: CallSite | None) -> dict[str, str]:
    """The `secrets` a job sees: the run's, or what its callers passed down (`inherit`)."""
    if call is None:
        return dict(ctx.secrets)
    parent = call_secrets(ctx, call.parent)
    declared = call.job.secrets
    if declared == "inherit":
        return parent
    if not isinstance(declared, Mapping):
        return {}
    env = Environment(contexts={"secrets": parent, "github": dict(ctx.github)})
    return {str(k): to_string(v) for k, v in render_value(dict(declared), env).items()}


def runner_labels(runs_on: Any) -> tuple[str, ...]:
    """The labels a runner must have for `runs-on` (string, list, or {group, labels})."""
    if isinstance(runs_on, Mapping):
        runs_on = runs_on.get("labels") or []
    if isinstance(runs_on, str):
        runs_on = [runs_on]
    if not isinstance(runs_on, list):
        return ()
    return tuple(sorted({to_string(label).strip().lower() for label in runs_on} - {""}))


def _chain(call: CallSite | None) -> list[CallSite]:
    out = []
    while call is not None:
        out.append(call)
        call = call.parent
    return out

"""Turning events into runs, and runs into what the scheduler and runners need.

`RunService` is the service-side counterpart of `conveyor.local.run`: it reads
a run's workflows (from the repository at the run's commit, or from the YAML
registered through the API), creates the run and all its jobs in one store
transaction, rebuilds a run's plan for the scheduler, and builds the
assignment a runner receives when it acquires a job. It also starts new
attempts (all jobs, or the failed ones with the others carried over) and
applies a workflow's `concurrency:` group when a run is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.engine.contexts import ref_for_event
from conveyor.engine.ledger import completed_steps
from conveyor.engine.records import JobInstance, JobRecord, NewJob, NewRun, RunRecord
from conveyor.engine.runplan import PlannedJob, group_members
from conveyor.engine.runsource import LoadedRun, event_of, event_sha, github_of, load_run_sources
from conveyor.engine.scheduler import (
    RunContext,
    call_secrets,
    creation_reads_github,
    job_contexts,
    queued_at_creation,
    unfinished_in_group,
)
from conveyor.engine.sources import RepositoryMirror
from conveyor.engine.states import Conclusion, RunStatus
from conveyor.engine.store import Store
from conveyor.errors import Conflict, ConveyorError, WorkflowError
from conveyor.expr import Environment, render_value, to_boolean, to_string
from conveyor.workflow import parse_workflow
from conveyor.workflow.triggers import dispatch_inputs, matches

LOADED_RUNS = 4096
"""How many runs' parsed workflows a server keeps at hand."""


@dataclass(frozen=True)
class RunSettings:
    server_url: str = "http://127.0.0.1:8080"
    lease_ttl: float = 600.0
    heartbeat_interval: float = 60.0
    secrets: Mapping[str, str] = field(default_factory=dict)
    vars: Mapping[str, str] = field(default_factory=dict)


class RunService:
    """Creates runs and serves what the scheduler and the runner protocol need."""

    def __init__(
        self,
        store: Store,
        mirror: RepositoryMirror,
        settings: RunSettings,
    ) -> None:
        self._store = store
        self._mirror = mirror
        self._settings = settings
        # Derived from immutable inputs (a commit, a registered source): safe to cache.
        # Most recently used last; bounded, as a server creates runs without end.
        self._loaded: OrderedDict[str, LoadedRun] = OrderedDict()
        # Runs as this server created them: what an assignment reads of a run (its
        # identity, commit, event and inputs) never changes after the creation.
        self._created: OrderedDict[str, RunRecord] = OrderedDict()
        self._lock = asyncio.Lock()

    # -- creating runs ------------------------------------------------------------

    async def start_run(
        self,
        tenant_id: str,
        workflow: Any,
        event: str,
        payload: Mapping[str, Any],
        inputs: Mapping[str, Any],
        *,
        ref: str | None = None,
        sha: str | None = None,
        idempotency_key: str | None = None,
        as_read: bool = False,
    ) -> RunRecord:
        """Create a run of a registered workflow (a `WorkflowRecord`) for an event.

        With `as_read`, only if the store still has the workflow enabled and as
        `workflow` is (else StaleWorkflow, before anything is written): for a
        caller that kept the record from an earlier read.
        """
        repo = await self._repository(tenant_id, workflow.repository_id)
        if repo is not None and not sha:
            await self._mirror.sync(repo.url)
            sha = await self._mirror.resolve(repo.url, ref or "HEAD")
        loaded = await load_run_sources(self._mirror, workflow, repo, sha or "")
        trigger = loaded.workflow.on.get(event)
        typed = (
            dispatch_inputs(trigger, inputs)
            if trigger is not None and trigger.inputs
            else dict(inputs)
        )
        run_ref = ref_for_event(event, payload, ref or "refs/heads/main")
        new_run = NewRun(
            workflow_path=workflow.path,
            workflow_name=loaded.workflow.display_name,
            event=event,
            payload=dict(payload),
            ref=run_ref,
            sha=sha,
            inputs=typed,
            tenant_id=tenant_id,
            repository_id=workflow.repository_id,
            idempotency_key=idempotency_key,
            workflow_id=workflow.id,
            workflow_version=workflow.updated_at if as_read else None,
        )
        run, _ = await self._store.create_run(
            new_run,
            _new_jobs(loaded.plan),
            group_of=self._group_of(loaded),
            queue_now=self._queue_now(loaded),
            queue_now_reads_number=creation_reads_github(loaded.plan),
        )
        self._remember(run, loaded)
        await self._enter_group(run, loaded)
        return run

    async def trigger(
        self,
        tenant_id: str,
        repository: Any,
        event_name: str,
        payload: Mapping[str, Any],
        delivery_id: str,
    ) -> list[str]:
        """Start a run of every workflow of the repository that the event matches.

        The delivery id makes each (delivery, workflow) run happen once, however
        often GitHub redelivers.
        """
        await self._mirror.sync(repository.url)
        event = event_of(event_name, payload)
        sha = event_sha(event_name, payload)
        if not sha:
            sha = await self._mirror.resolve(repository.url, event.ref or "HEAD")
        run_ids = []
        for path in await self._mirror.workflow_files(repository.url, sha):
            source = await self._mirror.show(repository.url, sha, path)
            try:
                model = parse_workflow(path, source, path)
            except WorkflowError:
                continue  # an invalid workflow in the repository triggers nothing
            if matches(model.on, event) is None:
                continue
            record = await self._store.register_workflow(
                tenant_id, path, source, model.display_name, repository_id=repository.id
            )
            run = await self.start_run(
                tenant_id,
                record,
                event_name,
                payload,
                {},
                ref=event.ref,
                sha=sha,
                idempotency_key=f"delivery:{delivery_id}:{path}",
            )
            run_ids.append(run.id)
        return run_ids

    async def rerun(self, run: RunRecord, failed_only: bool = False) -> RunRecord:
        """A new attempt of the run (same commit, payload and inputs).

        With `failed_only` (the run must have ended), the jobs that succeeded
        in `run` are carried over with their outputs instead of running again;
        the others, and every job that needs one of them, run again.
        """
        if run.workflow_id is None:
            raise ConveyorError(f"run {run.id} has no registered workflow to run again")
        workflow = await self._store.get_workflow(run.tenant_id, run.workflow_id)
        repo = await self._repository(run.tenant_id, run.repository_id)
        loaded = await load_run_sources(self._mirror, workflow, repo, run.sha or "")
        jobs = _new_jobs(loaded.plan)
        if failed_only:
            jobs = await self._carrying_over(run, loaded.plan, jobs)
        carried = tuple(job.key for job in jobs if "carry" in job.spec)
        new_run = NewRun(
            workflow_path=run.workflow_path,
            workflow_name=run.workflow_name,
            event=run.event,
            payload=run.payload,
            ref=run.ref,
            sha=run.sha,
            inputs=run.inputs,
            tenant_id=run.tenant_id,
            repository_id=run.repository_id,
            attempt=run.attempt + 1,
            run_number=run.run_number,
            workflow_id=run.workflow_id,
            carried_from=run.id if carried else None,
            carried_jobs=carried,
        )
        created, _ = await self._store.create_run(
            new_run,
            jobs,
            group_of=self._group_of(loaded),
            queue_now=None if carried else self._queue_now(loaded),
        )
        self._remember(created, loaded)
        await self._enter_group(created, loaded)
        return created

    async def _carrying_over(
        self, run: RunRecord, plan: Sequence[PlannedJob], jobs: Sequence[NewJob]
    ) -> list[NewJob]:
        """`jobs` with those to carry over from `run` marked so (their spec holds `carry`)."""
        if run.status != RunStatus.COMPLETED:
            raise Conflict(f"run {run.id} has not ended: re-run its failed jobs once it has")
        previous: dict[str, list[JobRecord]] = {}
        for row in await self._store.list_jobs(run.id):
            previous.setdefault(row.key, []).append(row)
        carried = carried_over(plan, previous)
        if len(carried) == len(jobs):
            raise Conflict(f"run {run.id} has no failed jobs to re-run")
        out = []
        for job in jobs:
            if job.key not in carried:
                out.append(job)
                continue
            rows = previous[job.key]
            outputs: dict[str, str] = {}
            for row in rows:  # matrix instances: merged, as `needs.<id>.outputs` sees them
                outputs.update(row.outputs)
            carry = {"conclusion": Conclusion.SUCCESS.value, "outputs": outputs}
            if len(rows) == 1:
                job = replace(job, name=rows[0].name, matrix=rows[0].matrix)
            out.append(replace(job, spec={"carry": carry}))
        return out

    async def read_workflow(self, repository: Any, path: str) -> str:
        """A workflow file of a repository at its default branch (for registration)."""
        await self._mirror.sync(repository.url)
        sha = await self._mirror.resolve(repository.url, "HEAD")
        return await self._mirror.show(repository.url, sha, path)

    def _queue_now(
        self, loaded: LoadedRun
    ) -> Callable[[RunRecord], Mapping[str, Sequence[JobInstance]] | None] | None:
        """How a new run's creation queues its root jobs, saving the scheduler a pass.

        Not for a run that may have to wait for its concurrency group, nor for
        one that carries jobs over: whether their jobs start is the scheduler's call.
        """
        if loaded.workflow.concurrency is not None:
            return None

        def queue_now(run: RunRecord) -> Mapping[str, Sequence[JobInstance]] | None:
            return queued_at_creation(self._context(run, loaded))

        return queue_now

    # -- concurrency groups ---------------------------------------------------------

    def _group_of(self, loaded: LoadedRun) -> Callable[[RunRecord], str | None] | None:
        """How to name a new run's concurrency group (None: its workflow has none).

        Group names are case-insensitive, as on GitHub: they are kept in lower case.
        """
        concurrency = loaded.workflow.concurrency
        if concurrency is None:
            return None

        def group_of(run: RunRecord) -> str | None:
            group = to_string(render_value(concurrency.group, self._group_env(run, loaded)))
            return group.lower() or None

        return group_of

    async def _enter_group(self, run: RunRecord, loaded: LoadedRun) -> None:
        """Cancel the runs of `run`'s group that it replaces.

        With `cancel-in-progress`, every older run of the group that has not
        ended; otherwise only the waiting ones: the oldest holds the group, and
        `run` waits behind it (the scheduler starts it when the group is free).
        """
        concurrency = loaded.workflow.concurrency
        if run.concurrency_group is None or concurrency is None:
            return
        cancel_running = to_boolean(
            render_value(concurrency.cancel_in_progress, self._group_env(run, loaded))
        )
        older = await unfinished_in_group(self._store, run, older_only=True)
        if not cancel_running:
            older = older[:-1]
        reason = f"superseded by a newer run in concurrency group {run.concurrency_group!r}"
        for other in older:
            with contextlib.suppress(Conflict):  # it ended meanwhile
                await self._store.cancel_run(other.id, reason=reason)

    def _group_env(self, run: RunRecord, loaded: LoadedRun) -> Environment:
        """The contexts a workflow's `concurrency:` may use: github, inputs and vars."""
        contexts = {
            "github": github_of(run, loaded, self._settings.server_url),
            "inputs": dict(run.inputs),
            "vars": dict(self._settings.vars),
        }
        return Environment(contexts=contexts)

    # -- what the scheduler and runners need --------------------------------------

    async def context_of(self, run: RunRecord) -> RunContext:
        return self._context(run, await self._loaded_for(run))

    def _context(self, run: RunRecord, loaded: LoadedRun) -> RunContext:
        return RunContext(
            plan=loaded.plan,
            github=github_of(run, loaded, self._settings.server_url),
            inputs=run.inputs,
            vars=dict(self._settings.vars),
            secrets=dict(self._settings.secrets),
        )

    async def assignment_for(self, job: JobRecord) -> dict[str, Any]:
        """The ASSIGNMENT a runner gets with its lease (docs/runner-protocol.md)."""
        run = self._created.get(job.run_id) or await self._store.get_run(job.run_id)
        loaded = await self._loaded_for(run)
        ctx = self._context(run, loaded)
        planned = next(p for p in loaded.plan if p.key == job.key)
        return {
            "job_id": job.id,
            "epoch": job.lease_epoch,
            "run_id": run.id,
            "key": job.key,
            "job": planned.key.rsplit("/", 1)[-1],
            "name": job.name,
            "matrix": dict(job.matrix) if job.matrix else None,
            "workflow": {
                "path": planned.workflow.path,
                "source": loaded.sources[planned.workflow.path],
            },
            "contexts": job_contexts(ctx, job.spec),
            "secrets": call_secrets(ctx, planned.call),
            "idempotency_base": ":".join(
                [
                    run.tenant_id,
                    run.id,
                    str(run.attempt),
                    job.key,
                    json.dumps(job.matrix, sort_keys=True),
                ]
            ),
            "checkout": dict(loaded.checkout) if loaded.checkout else None,
            "completed_steps": await completed_steps(self._store, job, planned.job),
            "lease_ttl": self._settings.lease_ttl,
            "heartbeat_interval": self._settings.heartbeat_interval,
        }

    # -- loading ------------------------------------------------------------------

    async def _loaded_for(self, run: RunRecord) -> LoadedRun:
        loaded = self._loaded.get(run.id)
        if loaded is not None:
            self._loaded.move_to_end(run.id)
            return loaded
        async with self._lock:
            loaded = self._loaded.get(run.id)
            if loaded is None:
                if run.workflow_id is None:
                    raise ConveyorError(f"run {run.id} has no registered workflow")
                workflow = await self._store.get_workflow(run.tenant_id, run.workflow_id)
                repo = await self._repository(run.tenant_id, run.repository_id)
                loaded = await load_run_sources(self._mirror, workflow, repo, run.sha or "")
                self._loaded[run.id] = loaded
                _bound(self._loaded)
        return loaded

    def _remember(self, run: RunRecord, loaded: LoadedRun) -> None:
        """A run this server created, and its sources."""
        self._loaded.setdefault(run.id, loaded)
        self._created.setdefault(run.id, run)
        _bound(self._loaded)
        _bound(self._created)

    async def _repository(self, tenant_id: str, repository_id: str | None) -> Any:
        if repository_id is None:
            return None
        return await self._store.get_repository(tenant_id, repository_id)


def carried_over(
    plan: Sequence[PlannedJob], previous: Mapping[str, Sequence[JobRecord]]
) -> set[str]:
    """The job keys a re-run of failed jobs carries over from the previous attempt.

    A job is carried when it succeeded there (every matrix instance of it)
    and needs no job that runs again; everything else runs again.
    """
    keys = {p.key: p for p in plan}
    carried = {
        key
        for key in keys
        if previous.get(key) and all(r.conclusion == Conclusion.SUCCESS for r in previous[key])
    }
    changed = True
    while changed:  # until no carried job needs one that runs again
        changed = False
        for key in sorted(carried):
            needed = (m for g in keys[key].need_groups for m in group_members(g, keys))
            if any(m not in carried for m in needed):
                carried.discard(key)
                changed = True
    return carried


def _bound(cache: OrderedDict[str, Any]) -> None:
    while len(cache) > LOADED_RUNS:
        cache.popitem(last=False)


def _new_jobs(plan: Sequence[PlannedJob]) -> list[NewJob]:
    return [NewJob(key=p.key, name=p.key, needs=p.need_groups, labels=()) for p in plan]

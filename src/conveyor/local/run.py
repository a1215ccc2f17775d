"""`conveyor run`: one workflow run on this machine, through the real engine.

The store is a temporary SQLite database; the scheduler and a pool of
in-process runner workers share one event loop. Jobs are acquired from the
store exactly as remote runners acquire them, so this path exercises the
same transitions as the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.engine.contexts import RunIdentity, github_context, ref_for_event
from conveyor.engine.records import JobRecord, NewJob, NewRun
from conveyor.engine.runplan import PlannedJob, plan_run
from conveyor.engine.scheduler import RunContext, Scheduler, call_secrets, job_contexts
from conveyor.engine.states import Conclusion, JobStatus
from conveyor.errors import ConveyorError, WorkflowError
from conveyor.local.console import Console
from conveyor.local.report import build_report
from conveyor.local.reporter import StoreReporter
from conveyor.runner.artifacts import DirectoryArtifactStore
from conveyor.runner.assignment import JobAssignment
from conveyor.runner.executor import JobExecutor
from conveyor.runner.loop import run_event_loop
from conveyor.runner.process import kill_live_groups
from conveyor.runner.workspace import Slots
from conveyor.store.sqlite import SqliteStore
from conveyor.workflow import load_workflow
from conveyor.workflow.model import Workflow

RUNNER_ID = "local"


class UsageError(ConveyorError):
    """The command line or its files cannot be used (exit 2)."""


@dataclass(frozen=True)
class RunOptions:
    workflow: str
    event: str
    payload: str | None = None
    inputs: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    vars: Mapping[str, str] = field(default_factory=dict)
    job: str | None = None
    report: str | None = None
    parallel: int = os.cpu_count() or 2
    bind: bool = False


def run(options: RunOptions, console: Console) -> int:
    """Run the workflow; -> exit status (0 success, 1 failure/cancelled, 2 invalid)."""
    try:
        prepared = _prepare(options)
    except WorkflowError as exc:
        console.invalid(exc)
        return 2
    except UsageError as exc:
        console.error(str(exc))
        return 2
    return run_event_loop(_LocalRun(options, prepared, console).execute())


@dataclass(frozen=True)
class _Prepared:
    repo: str
    workflow: Workflow
    plan: list[PlannedJob]
    identity: RunIdentity
    inputs: Mapping[str, Any]


def _prepare(options: RunOptions) -> _Prepared:
    repo = os.getcwd()
    cache: dict[str, Workflow] = {}

    def load(path: str) -> Workflow:
        full = os.path.normpath(os.path.join(repo, path))
        if full not in cache:
            if not os.path.isfile(full):
                raise UsageError(f"{path}: no such workflow file")
            cache[full] = load_workflow(full, display_path=os.path.relpath(full, repo))
        return cache[full]

    workflow = load(options.workflow)
    plan = plan_run(workflow, load)
    if options.job:
        plan = _only(plan, options.job)
    payload = _payload(options.payload)
    inputs = _inputs(workflow, options, payload)
    sha, branch = _git_head(repo)
    ref = ref_for_event(options.event, payload, f"refs/heads/{branch}" if branch else "")
    identity = RunIdentity(
        run_id="1",
        run_number=1,
        attempt=1,
        event_name=options.event,
        payload=payload,
        repository=_repository_name(payload, repo),
        workspace=repo,
        sha=str(payload.get("after") or sha) if options.event == "push" else sha,
        ref=ref,
        actor=str((payload.get("sender") or {}).get("login") or "conveyor"),
        workflow=workflow.display_name,
        workflow_ref=f"{options.workflow}@{ref}",
    )
    return _Prepared(repo, workflow, plan, identity, inputs)


def _only(plan: list[PlannedJob], job: str) -> list[PlannedJob]:
    """`--job ID`: that job alone (its needs are not run, so they are dropped)."""
    chosen = [p for p in plan if p.report_id == job]
    if not chosen:
        raise UsageError(f"--job {job}: no such job in the workflow")
    keys = {p.key for p in chosen}
    return [
        PlannedJob(p.key, p.job, p.workflow, tuple(g for g in p.need_groups if g in keys), p.call)
        for p in chosen
    ]


def _payload(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise UsageError(f"--payload {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"--payload {path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--payload {path}: the event payload must be a JSON object")
    return data


def _inputs(workflow: Workflow, options: RunOptions, payload: Mapping[str, Any]) -> dict[str, Any]:
    from conveyor.workflow.triggers import InputError, dispatch_inputs

    given: dict[str, Any] = {}
    from_payload = payload.get("inputs")
    if isinstance(from_payload, Mapping):
        given.update(from_payload)
    given.update(options.inputs)
    trigger = workflow.on.get(options.event)
    if trigger is None or not trigger.inputs:
        return dict(given)
    try:
        return dispatch_inputs(trigger, given)
    except InputError as exc:
        raise UsageError(f"--input: {exc}") from None


def _git_head(repo: str) -> tuple[str, str]:
    """(commit sha, branch) of the checkout; empty strings outside git.

    Read from the files under .git (starting `git` costs more than the rest of
    a one-step run's set-up); `git rev-parse` answers whatever they do not.
    """
    head = _read_head(repo)
    if head is not None:
        return head
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD", "--abbrev-ref", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "", ""
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) < 2:
        return "", ""
    return lines[0], "" if lines[1] == "HEAD" else lines[1]


_SHA = re.compile(r"[0-9a-f]{40}")


def _read_head(repo: str) -> tuple[str, str] | None:
    """HEAD of a plain `.git` directory (a loose or packed branch, or detached); else None."""
    git = os.path.join(repo, ".git")
    try:
        with open(os.path.join(git, "HEAD"), encoding="utf-8") as f:
            head = f.read().strip()
        if _SHA.fullmatch(head):
            return head, ""
        if not head.startswith("ref: refs/heads/"):
            return None
        ref = head.removeprefix("ref: ")
        sha = _loose_ref(git, ref) or _packed_ref(git, ref)
    except (OSError, UnicodeDecodeError):
        return None
    return (sha, ref.removeprefix("refs/heads/")) if sha else None


def _loose_ref(git: str, ref: str) -> str | None:
    try:
        with open(os.path.join(git, *ref.split("/")), encoding="utf-8") as f:
            sha = f.read().strip()
    except FileNotFoundError:
        return None
    return sha if _SHA.fullmatch(sha) else None


def _packed_ref(git: str, ref: str) -> str | None:
    with open(os.path.join(git, "packed-refs"), encoding="utf-8") as f:
        for line in f:
            sha, _, name = line.strip().partition(" ")
            if name == ref and _SHA.fullmatch(sha):
                return sha
    return None


def _repository_name(payload: Mapping[str, Any], repo: str) -> str:
    repository = payload.get("repository")
    if isinstance(repository, Mapping) and isinstance(repository.get("full_name"), str):
        return str(repository["full_name"])
    return f"local/{os.path.basename(repo)}"


class _LocalRun:
    """One run: the store, the scheduler and the in-process runner workers."""

    def __init__(self, options: RunOptions, prepared: _Prepared, console: Console) -> None:
        self.options = options
        self.p = prepared
        self.console = console
        self.planned = {p.key: p for p in prepared.plan}
        self.wake = asyncio.Event()
        self.reporters: dict[str, StoreReporter] = {}
        self.cancelled = False
        self.done = False
        self.summaries: list[tuple[str, str]] = []

    async def execute(self) -> int:
        with tempfile.TemporaryDirectory(prefix="conveyor-run-") as tmp:
            self.tmp = tmp
            self.store = await SqliteStore.open(":memory:", durable=False)
            try:
                return await self._execute()
            finally:
                await self.store.close()

    async def _execute(self) -> int:
        github = github_context(self.p.identity)
        self.context = RunContext(
            plan=self.p.plan,
            github=github,
            inputs=self.p.inputs,
            vars=dict(self.options.vars),
            secrets=dict(self.options.secrets),
        )
        self.scheduler = Scheduler(self.store, self._context_of, match_labels=False)
        new_run = NewRun(
            workflow_path=self.options.workflow,
            workflow_name=self.p.workflow.display_name,
            event=self.options.event,
            payload=self.p.identity.payload,
            ref=self.p.identity.ref,
            sha=self.p.identity.sha,
            inputs=dict(self.p.inputs),
        )
        jobs = [NewJob(key=p.key, name=p.key, needs=p.need_groups, labels=()) for p in self.p.plan]
        run, _ = await self.store.create_run(new_run, jobs)
        self.run_id = run.id
        self.artifacts = DirectoryArtifactStore(os.path.join(self.tmp, "artifacts"))
        self.executor = JobExecutor(slots=Slots(self.tmp), artifacts=self.artifacts)
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        try:
            await self._advance()
            workers = [
                asyncio.create_task(self._worker(i)) for i in range(max(1, self.options.parallel))
            ]
            await asyncio.gather(*workers)
        finally:
            self._remove_signals(loop)
        rows = await self.store.list_jobs(self.run_id)
        final = await self.store.get_run(self.run_id)
        report = await build_report(self.store, final, rows, self.planned)
        if self.options.report:
            _write_json(self.options.report, report)
        self.console.summary(report, self.summaries)
        return 0 if report["conclusion"] == Conclusion.SUCCESS else 1

    async def _context_of(self, _run: object) -> RunContext:
        return self.context

    async def _advance(self) -> None:
        progress = await self.scheduler.advance(self.run_id)
        self.done = progress.concluded
        # In-process runners learn of cancellation here, as remote ones do from heartbeats.
        for row in progress.rows:
            reporter = self.reporters.get(row.id)
            if row.cancel_requested and reporter is not None:
                reporter.cancel.set()
        self.wake.set()

    async def _worker(self, number: int) -> None:
        while not self.done:
            job = await self.store.acquire_job(f"{RUNNER_ID}-{number}", (), lease_ttl=86400.0)
            if job is None:
                self.wake.clear()
                if self.done:
                    return
                await self.wake.wait()
                continue
            await self._run_job(job)
            await self._advance()

    async def _run_job(self, job: JobRecord) -> None:
        planned = self.planned[job.key]
        job = await self.store.start_job(job.id, job.lease_epoch)
        reporter = StoreReporter(self.store, job, self.console.job_printer(job, planned.report_id))
        self.reporters[job.id] = reporter
        if self.cancelled:
            reporter.cancel.set()
        try:
            outcome = await self.executor.run(self._assignment(job, planned), reporter)
        finally:
            self.reporters.pop(job.id, None)
        if outcome.summary:
            self.summaries.append((job.name, outcome.summary))
        status = {
            "success": JobStatus.COMPLETED,
            "failure": JobStatus.FAILED,
            "cancelled": JobStatus.CANCELLED,
        }[outcome.conclusion]
        await self.store.finish_job(
            job.id,
            job.lease_epoch,
            status,
            Conclusion(outcome.conclusion),
            outcome.outputs,
            reason=outcome.reason,
        )

    def _assignment(self, job: JobRecord, planned: PlannedJob) -> JobAssignment:
        contexts = job_contexts(self.context, job.spec)
        secrets = call_secrets(self.context, planned.call)
        return JobAssignment(
            job_id=job.id,
            epoch=job.lease_epoch,
            key=planned.key.rsplit("/", 1)[-1],
            name=job.name,
            workflow=planned.workflow,
            job=planned.job,
            source_dir=self.p.repo,
            matrix=job.matrix,
            contexts=contexts,
            secrets=secrets,
            idempotency_base=f"{self.run_id}:1:{job.key}:{json.dumps(job.matrix, sort_keys=True)}",
            bind=self.options.bind,
        )

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal)

    def _remove_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)

    def _on_signal(self) -> None:
        if self.cancelled:
            self.console.error("cancelling again: stopping now")
            kill_live_groups()  # no step outlives the run, whatever it ignores
            os._exit(130)
        self.cancelled = True
        self.console.error("cancelling the run (Ctrl-C again to stop at once)")
        for reporter in list(self.reporters.values()):
            reporter.cancel.set()
        asyncio.get_running_loop().create_task(self._cancel_pending())

    async def _cancel_pending(self) -> None:
        await self.store.cancel_run(self.run_id)
        await self._advance()


def _write_json(path: str, data: Any) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
    except OSError as exc:
        raise UsageError(f"--report {path}: {exc.strerror or exc}") from None


def parse_pairs(pairs: Sequence[str], flag: str) -> dict[str, str]:
    """`k=v` arguments into a dict; a pair without `=` is a usage error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {pair!r}: expected NAME=VALUE")
        out[key] = value
    return out

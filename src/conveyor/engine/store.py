"""The Store protocol: durable runs, jobs, steps, logs and the outbox behind them.

Every state change is one transaction holding one compare-and-set
`UPDATE … WHERE id = ? AND status IN (allowed_from(target)) [AND lease_epoch = ?]`
and its outbox row(s). When the update matches no row the transaction is
rolled back (no trace, no event) and the method raises:

- `NotFound`   the object does not exist;
- `LeaseLost`  a runner write whose epoch is stale, or whose job no longer
               holds a lease (re-queued by the reaper, finished, cancelled);
- `Conflict`   the object is not in a status the transition starts from.

Runner writes (`start_job`, `renew_lease`, `start_step`, `finish_step`,
`append_log`, `add_artifact`, `finish_job`) carry the job's lease epoch, the
fencing token that `acquire_job` increments; a runner flushes its logs before
`finish_job`, after which its epoch holds nothing. Heartbeats and log
lines are not state changes and write no outbox row.

Free text (names, reasons, log lines) is stored exactly, except NUL and
lone surrogates, which no database text column holds: they become U+FFFD.
JSON data (payloads, specs, outputs) round-trips exactly. A lone surrogate
in an identifier or key is a StoreError; a NUL in one is kept on SQLite and
becomes U+FFFD on PostgreSQL (looking it up by the same value works on both).

Service objects (tokens, runners, repositories, workflows, artifacts) belong
to a tenant: a lookup that names the tenant treats another tenant's object
as NotFound. Tokens are kept only as SHA-256 hex digests.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol

from conveyor.engine.records import (
    ArtifactRecord,
    JobInstance,
    JobRecord,
    KeyedRequest,
    LogLine,
    NewJob,
    NewRun,
    OutboxEvent,
    RepositoryRecord,
    RunnerRecord,
    RunRecord,
    StepRecord,
    TokenRecord,
    WorkflowRecord,
)
from conveyor.engine.reports import ReportEvent
from conveyor.engine.states import Conclusion, JobStatus, RunStatus, StepStatus


class Store(Protocol):
    @property
    def transactions(self) -> int:
        """Write transactions committed through this store since it opened."""
        ...

    # -- tenants and runs ---------------------------------------------------------

    async def create_tenant(self, tenant_id: str, name: str) -> None:
        """Add a tenant (`default` always exists); Conflict if the id is taken."""
        ...

    async def create_run(
        self,
        run: NewRun,
        jobs: Sequence[NewJob],
        *,
        group_of: Callable[[RunRecord], str | None] | None = None,
        queue_now: Callable[[RunRecord], Mapping[str, Sequence[JobInstance]] | None] | None = None,
        queue_now_reads_number: bool = True,
    ) -> tuple[RunRecord, list[JobRecord]]:
        """Create a QUEUED run and its PENDING jobs; outbox `run.created`.

        A run with the same `idempotency_key` in the same tenant is returned
        as it is instead. Job keys must be unique (ValueError); an unknown
        tenant is NotFound. `run_number` defaults to one more than the last
        run of the same workflow and repository. `group_of`, when given,
        computes the run's concurrency group from the new run (its id and
        number known) in the same transaction, replacing `run.concurrency_group`;
        what it raises rolls the creation back.

        `queue_now`, when given, is then asked which jobs to queue at once, by
        key, as the instances `queue_job` would take.
        Those jobs are created QUEUED, a row per instance, each with outbox
        `job.queued`, and `run.created` says `"scheduled": true`: the creation
        made every decision the run's start called for. When it answers None,
        every job is created PENDING for the scheduler. Without
        `queue_now_reads_number` (and without `group_of`), `queue_now` promises
        not to read the run's number: a backend may then draw the number in the
        very statement that creates the run, and `queue_now` sees it as 0.
        """
        ...

    async def get_run(self, run_id: str, *, tenant_id: str | None = None) -> RunRecord:
        """The run; NotFound also when `tenant_id` is given and the run is another tenant's."""
        ...

    async def list_runs(
        self,
        tenant_id: str,
        *,
        status: RunStatus | Collection[RunStatus] | None = None,
        branch: str | None = None,
        workflow_id: str | None = None,
        event: str | None = None,
        concurrency_group: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """The tenant's runs, newest first (`created_at`, then `id`, descending).

        Filters combine with AND; `branch` matches runs whose ref is
        `refs/heads/<branch>`. `after` is the last run id of the previous page
        (NotFound if it is not one of the tenant's runs).
        """
        ...

    async def complete_run(self, run_id: str, conclusion: Conclusion) -> RunRecord:
        """QUEUED | IN_PROGRESS → COMPLETED once every job is terminal; outbox `run.completed`."""
        ...

    async def cancel_run(self, run_id: str, *, reason: str = "run cancelled") -> list[JobRecord]:
        """Cancel PENDING/QUEUED jobs now, ask leased ones to stop; the jobs changed.

        Outbox `job.completed` per cancelled job, `job.cancel_requested` per
        leased job (once); `reason` is kept on each. A completed run is a Conflict.
        """
        ...

    # -- jobs, scheduler side -------------------------------------------------------

    async def list_jobs(self, run_id: str) -> list[JobRecord]:
        """The run's jobs in creation order (matrix instances after the originals)."""
        ...

    async def list_jobs_page(
        self, run_id: str, *, after: str | None = None, limit: int = 50
    ) -> list[JobRecord]:
        """Up to `limit` of the run's jobs in the workflow's order, after job `after`.

        The workflow's order is creation order with a key's later rows (the
        matrix instances made when it was queued) right after its first row:
        a job's place in it never changes. `after` is the last job of the
        previous page (NotFound if it is not one of the run's jobs).
        """
        ...

    async def get_job(self, job_id: str) -> JobRecord: ...

    async def queue_job(self, job_id: str, instances: Sequence[JobInstance]) -> list[JobRecord]:
        """PENDING → QUEUED as `instances[0]`; the others become new QUEUED rows.

        Outbox `job.queued` per instance. At least one instance (ValueError).
        """
        ...

    async def skip_job(self, job_id: str, reason: str) -> JobRecord:
        """PENDING → SKIPPED, conclusion skipped; outbox `job.completed`."""
        ...

    async def fail_pending(self, job_id: str, reason: str) -> JobRecord:
        """PENDING → FAILED, conclusion failure (its `if:` or matrix failed); `job.completed`."""
        ...

    async def carry_over_job(
        self, job_id: str, conclusion: Conclusion, outputs: Mapping[str, str]
    ) -> JobRecord:
        """PENDING → COMPLETED with the conclusion and outputs of the previous attempt.

        For a re-run of failed jobs: the job succeeded in the attempt before, so
        it is not run again. Only `success` is carried (ValueError otherwise);
        outbox `job.completed`.
        """
        ...

    async def cancel_job(self, job_id: str, reason: str) -> JobRecord:
        """Cancel one job: PENDING/QUEUED → CANCELLED now, a leased job is asked to stop.

        Outbox `job.completed` or `job.cancel_requested` (once); a terminal job
        is a Conflict. `reason` is kept unless the runner reports its own.
        """
        ...

    async def reap_expired(self, max_retries: int) -> list[JobRecord]:
        """Take back every leased job whose lease has expired; the jobs changed.

        Back to QUEUED (`retry_count + 1`, lease cleared, epoch kept) while
        `retry_count < max_retries`, outbox `job.requeued`; otherwise FAILED
        with reason 'runner lost' (CANCELLED if a cancel was requested),
        outbox `job.completed`.
        """
        ...

    # -- jobs, runner side ------------------------------------------------------------

    async def acquire_job(
        self,
        runner_id: str,
        labels: Sequence[str],
        lease_ttl: float,
        *,
        tenant_id: str | None = None,
        request: str | None = None,
    ) -> JobRecord | None:
        """Lease the oldest QUEUED job the runner can run, or None.

        A job matches when its labels are a subset of `labels` (exact
        strings; no labels matches any runner). QUEUED → ACQUIRED,
        `lease_epoch + 1`; outbox `job.acquired`. Safe under concurrent callers.
        The job remembers `request`, the runner's name for the call that
        leased it (see `hand_again`).
        """
        ...

    async def hand_again(self, runner_id: str, request: str, lease_ttl: float) -> JobRecord | None:
        """The job leased to the runner by its call `request`, if the runner has not
        started it (the answer that handed it was lost) and its lease has not run out,
        with the lease renewed to now + `lease_ttl` (the runner counts it from now); None
        if there is none. A job is handed again once: a call whose answers never get
        through cannot keep it from the reaper."""
        ...

    async def start_job(self, job_id: str, epoch: int) -> JobRecord:
        """ACQUIRED → RUNNING (and the run QUEUED → IN_PROGRESS); outbox `job.started`."""
        ...

    async def renew_lease(self, job_id: str, epoch: int, lease_ttl: float) -> JobRecord:
        """Extend the lease to now + `lease_ttl`; read `cancel_requested` from the result."""
        ...

    async def finish_job(
        self,
        job_id: str,
        epoch: int,
        status: JobStatus,
        conclusion: Conclusion,
        outputs: Mapping[str, str],
        reason: str | None = None,
    ) -> JobRecord:
        """Leased → COMPLETED | FAILED | CANCELLED (per the table); outbox `job.completed`.

        When no job of the run is left unfinished (PENDING counts as unfinished),
        the same transaction concludes the run as `complete_run` would, with the
        scheduler's conclusion rule, and writes its `run.completed`.
        """
        ...

    # -- steps and logs ---------------------------------------------------------------

    async def list_steps(self, job_id: str) -> list[StepRecord]:
        """The job's step rows by index (rows of an earlier attempt keep their epoch)."""
        ...

    async def start_step(
        self, job_id: str, epoch: int, index: int, step_id: str | None, name: str
    ) -> None:
        """Step PENDING → RUNNING; outbox `step.started`.

        A row written under an earlier epoch (a previous attempt) counts as PENDING.
        """
        ...

    async def finish_step(
        self,
        job_id: str,
        epoch: int,
        index: int,
        status: StepStatus,
        outcome: Conclusion | None,
        conclusion: Conclusion | None,
        outputs: Mapping[str, str],
        *,
        step_id: str | None = None,
        name: str = "",
    ) -> None:
        """Step → COMPLETED | FAILED | SKIPPED; outbox `step.completed`.

        A step never started (skipped, or failed before it ran) is created
        here; `step_id` and a non-empty `name` replace the recorded ones.
        """
        ...

    async def append_log(
        self, job_id: str, epoch: int, lines: Sequence[tuple[int | None, str]]
    ) -> int:
        """Append `(step_index, text)` lines numbered on from the job's last seq; the last seq."""
        ...

    async def apply_report(
        self, job_id: str, epoch: int, events: Sequence[ReportEvent], *, seq: int | None = None
    ) -> int | None:
        """A runner's batch of events, applied in order in one transaction.

        With `seq`, the report's number within the lease (1, 2, …): a report
        numbered no higher than the last applied one was applied already (the
        runner sent it again after losing the answer); it is answered with the
        job's last log seq and changes nothing.

        Each event has the checks, rows and outbox events of its own call
        (`start_job`, `start_step`, `append_log`, `finish_step`, `finish_job`);
        the first refusal refuses the whole batch and nothing is written. Step
        times the runner reports are kept, but never later than the server's
        clock. The last log seq written, None when the batch had no lines.
        """
        ...

    async def report_and_acquire(
        self,
        job_id: str,
        epoch: int,
        events: Sequence[ReportEvent],
        *,
        seq: int | None = None,
        runner_id: str,
        labels: Sequence[str],
        lease_ttl: float,
        tenant_id: str | None = None,
    ) -> tuple[int | None, JobRecord | None]:
        """`apply_report`, then `acquire_job` for the runner (whose slot the report may have
        freed): -> (the report's answer, the job now leased to the runner or None). A
        backend may do both in one transaction; a refused report acquires nothing. A
        numbered report sent again (its answer was lost) is answered with the job the
        first one was handed, if the runner has not started it (see `hand_again`)."""
        ...

    async def read_log(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[LogLine]:
        """Up to `limit` lines with `seq > after_seq`, in order."""
        ...

    # -- outbox -------------------------------------------------------------------------

    async def events_after(self, cursor: int, limit: int = 100) -> list[OutboxEvent]:
        """Up to `limit` events with `id > cursor`, in commit order."""
        ...

    async def get_cursor(self, consumer: str) -> int:
        """The consumer's position in the outbox (0 before its first advance)."""
        ...

    async def advance_cursor(self, consumer: str, expected: int, new: int) -> bool:
        """Move the cursor from `expected` to `new`; False if someone else moved it first."""
        ...

    async def wait_for_event(self, timeout: float) -> None:
        """Return when events that leave the scheduler work (`scheduler_work`) may have
        been committed, or after `timeout` seconds.

        Returns at once if one was committed since this task last called
        `events_after` on this store, so a consumer that finds nothing and
        then waits cannot miss a commit in between. Other writers wake it too
        on PostgreSQL (LISTEN/NOTIFY); on SQLite only this store's own writes
        do (a slow poll covers other processes).
        """
        ...

    async def wait_for_queued(self, timeout: float) -> None:
        """Return when a job may have been queued (`QUEUEING`), or after `timeout` seconds.

        As `wait_for_event`, with `acquire_job` as the look that a commit in
        between is measured against.
        """
        ...

    def cancels_looked(self) -> None:
        """Note that the calling task is about to read whether a job's cancel was asked
        for: `wait_for_cancel` returns at once for a cancel committed since."""
        ...

    async def wait_for_cancel(self, timeout: float) -> None:
        """Return when some running job's cancel may have been asked for
        (`job.cancel_requested`), or after `timeout` seconds; as `wait_for_event`, with
        `cancels_looked` as the look."""
        ...

    def wake_waiters(self) -> None:
        """Wake every task in `wait_for_event`, `wait_for_queued` or `wait_for_cancel`
        now (the server is stopping: its long polls answer instead of holding the
        shutdown)."""
        ...

    # -- tokens and runners -----------------------------------------------------------

    async def create_token(
        self, tenant_id: str, kind: str, token_hash: str, *, runner_id: str | None = None
    ) -> None:
        """Store a token's SHA-256 hex digest; `kind` is a `TokenKind`.

        A runner token names its (same-tenant) runner, other kinds none
        (ValueError); a digest already stored is a Conflict.
        """
        ...

    async def find_token(self, token_hash: str) -> TokenRecord | None: ...

    async def register_runner(
        self,
        tenant_id: str,
        name: str,
        labels: Sequence[str],
        *,
        token_hash: str | None = None,
    ) -> RunnerRecord:
        """Add a runner; with `token_hash`, its runner token in the same transaction."""
        ...

    async def get_runner(self, runner_id: str) -> RunnerRecord: ...

    async def touch_runner(self, runner_id: str) -> None:
        """Set `last_seen_at` to now."""
        ...

    # -- repositories and workflows ------------------------------------------------------

    async def create_repository(self, tenant_id: str, name: str, url: str) -> RepositoryRecord:
        """Add a repository; a name already used in the tenant is a Conflict."""
        ...

    async def get_repository(self, tenant_id: str, repo_id: str) -> RepositoryRecord: ...

    async def find_repository(self, tenant_id: str, name: str) -> RepositoryRecord | None: ...

    async def list_repositories(
        self, tenant_id: str, *, after: str | None = None, limit: int | None = None
    ) -> list[RepositoryRecord]:
        """The tenant's repositories by name (then id), up to `limit` (None: all of them).

        `after` is the id of the last repository of the previous page (NotFound
        if it is not one of the tenant's).
        """
        ...

    async def register_workflow(
        self,
        tenant_id: str,
        path: str,
        source: str,
        name: str,
        *,
        repository_id: str | None = None,
    ) -> WorkflowRecord:
        """Add the workflow at (`repository_id`, `path`), or replace its source and name.

        Registering a path again keeps its id, `created_at` and `enabled`.
        An unknown tenant or a repository of another tenant is NotFound.
        """
        ...

    async def get_workflow(self, tenant_id: str, wf_id: str) -> WorkflowRecord: ...

    async def list_workflows(
        self,
        tenant_id: str | None,
        *,
        after: str | None = None,
        limit: int = 50,
        enabled: bool | None = None,
        repository_id: str | None = None,
    ) -> list[WorkflowRecord]:
        """Workflows ordered by id, those with `id > after`; `tenant_id=None` lists every tenant's."""
        ...

    async def set_workflow_enabled(
        self, tenant_id: str, wf_id: str, enabled: bool
    ) -> WorkflowRecord: ...

    async def delete_workflow(self, tenant_id: str, wf_id: str) -> None:
        """Remove the workflow; its runs keep their `workflow_id`."""
        ...

    # -- artifacts and idempotent responses ------------------------------------------------

    async def add_artifact(
        self, job_id: str, epoch: int, name: str, size: int, path: str
    ) -> str | None:
        """Record an artifact of the job's run that the job uploaded under lease `epoch`.

        A runner write: LeaseLost unless `epoch` holds the job's lease, checked
        in the write itself. A name the run already has is a Conflict, unless
        this job uploaded it under an earlier epoch (an execution the reaper
        took back): then it is replaced. -> the path of the replaced artifact.
        """
        ...

    async def list_artifacts(
        self, run_id: str, *, after: str | None = None, limit: int | None = None
    ) -> list[ArtifactRecord]:
        """The run's artifacts by name, up to `limit` (None: all of them).

        `after` is the name of the last artifact of the previous page (NotFound
        if the run has no artifact of that name).
        """
        ...

    async def get_artifact(self, run_id: str, name: str) -> ArtifactRecord: ...

    async def reserve_response(
        self, tenant_id: str, key: str, fingerprint: str, stale_after: float
    ) -> KeyedRequest:
        """Reserve the tenant's `key` for the request `fingerprint`, or say who holds it.

        The first caller inserts the key's row; a concurrent one loses the
        insert, across every server sharing the database. A reservation of
        the same request older than `stale_after` seconds, with no answer,
        is taken over (its server died).
        """
        ...

    async def keep_response(
        self, tenant_id: str, key: str, reservation: str, status: int, body: str
    ) -> bool:
        """Store the answer of the request holding `reservation`; False if it no longer does."""
        ...

    async def release_response(self, tenant_id: str, key: str, reservation: str) -> bool:
        """Free the key (its request failed) so a retry can act; False if no longer held."""
        ...

    async def close(self) -> None: ...

"""What the server keeps around runs in the PostgreSQL store: tokens, runners, repositories, workflows.

Also cron ticks (claimed once, by a unique row, however many servers race
for them), artifacts and `Idempotency-Key` reservations and answers.
The same semantics as `sqlite_service`; uniqueness races between servers
are settled by `ON CONFLICT`, never by a read before the write. An artifact
upload is a runner write: it locks its job `FOR SHARE` while its epoch holds
the lease, and its insert spells the fence out again.
"""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.engine.records import (
    ArtifactRecord,
    KeyedRequest,
    RepositoryRecord,
    RunnerRecord,
    TokenRecord,
    WorkflowRecord,
)
from conveyor.errors import Conflict, NotFound
from conveyor.store import rows
from conveyor.store.postgres_base import LEASED_IN, PostgresBase, Tx

_INSERT_TOKEN = """
    INSERT INTO tokens (hash, tenant_id, kind, runner_id, created_at)
    VALUES (%s, %s, %s, %s, %s)
    ON CONFLICT (hash) DO NOTHING
"""
_INSERT_RUNNER = f"""
    INSERT INTO runners (id, tenant_id, name, labels, created_at, last_seen_at)
    VALUES (%s, %s, %s, %s, %s, %s)
    RETURNING {rows.RUNNER_COLUMNS}
"""
_INSERT_REPOSITORY = f"""
    INSERT INTO repositories (id, tenant_id, name, url, created_at) VALUES (%s, %s, %s, %s, %s)
    ON CONFLICT (tenant_id, name) DO NOTHING
    RETURNING {rows.REPOSITORY_COLUMNS}
"""
_REGISTER_WORKFLOW = f"""
    INSERT INTO workflows (id, tenant_id, repository_id, path, name, source, enabled,
        created_at, updated_at)
    VALUES (%s, %s, %s, %s, %s, %s, TRUE, %s, %s)
    ON CONFLICT (tenant_id, COALESCE(repository_id, ''), path) DO UPDATE SET
        name = excluded.name, source = excluded.source, updated_at = excluded.updated_at
    RETURNING {rows.WORKFLOW_COLUMNS}
"""
_WORKFLOW = f"SELECT {rows.WORKFLOW_COLUMNS} FROM workflows WHERE id = %s AND tenant_id = %s"
_LIST_WORKFLOWS = f"""
    SELECT {rows.WORKFLOW_COLUMNS} FROM workflows
    WHERE (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s::text)
      AND (%(after)s::text IS NULL OR id > %(after)s::text)
      AND (%(enabled)s::boolean IS NULL OR enabled = %(enabled)s::boolean)
      AND (%(repository)s::text IS NULL OR repository_id = %(repository)s::text)
    ORDER BY id LIMIT %(limit)s
"""
# Pages by name, then id; LIMIT NULL is no limit. `after` is known to be one of the tenant's.
_LIST_REPOSITORIES = f"""
    SELECT {rows.REPOSITORY_COLUMNS} FROM repositories
    WHERE tenant_id = %(tenant)s
      AND (%(after)s::text IS NULL
           OR (name, id) > (SELECT name, id FROM repositories WHERE id = %(after)s::text))
    ORDER BY name, id LIMIT %(limit)s
"""
_REPOSITORY_IN_TENANT = "SELECT 1 FROM repositories WHERE id = %s AND tenant_id = %s"
# The first request with a key inserts its row (a concurrent insert waits for it, then
# finds the key taken); a stale reservation of the same request (its server died) is taken
# over. RETURNING: a row when the caller holds the key.
_RESERVE_KEY = """
    INSERT INTO idempotent_responses (tenant_id, key, fingerprint, reservation, reserved_at)
    VALUES (%s, %s, %s, %s, %s)
    ON CONFLICT (tenant_id, key) DO UPDATE SET
        reservation = excluded.reservation, reserved_at = excluded.reserved_at
    WHERE idempotent_responses.status IS NULL
      AND idempotent_responses.fingerprint = excluded.fingerprint
      AND idempotent_responses.reserved_at < %s
    RETURNING 1
"""
_KEYED_REQUEST = (
    "SELECT fingerprint, status, body FROM idempotent_responses WHERE tenant_id = %s AND key = %s"
)
_RESERVE_ATTEMPTS = 3

# An upload, fenced by the job's lease: a name new to the run is inserted; a name the same
# job uploaded under an earlier epoch (an execution the reaper took back) is replaced.
_UPLOAD_ARTIFACT = f"""
    INSERT INTO artifacts (id, run_id, name, path, size, created_at, job_key, job_id, epoch)
    SELECT %(id)s, run_id, %(name)s, %(path)s, %(size)s, %(now)s, key, id, lease_epoch
    FROM jobs
    WHERE id = %(job)s AND lease_epoch = %(epoch)s AND status IN {LEASED_IN}
    ON CONFLICT (run_id, name) DO UPDATE SET
        path = excluded.path, size = excluded.size, created_at = excluded.created_at,
        epoch = excluded.epoch
    WHERE artifacts.job_id = excluded.job_id AND artifacts.epoch < excluded.epoch
"""
_ARTIFACT_PATH = "SELECT path FROM artifacts WHERE run_id = %s AND name = %s FOR UPDATE"
_LIST_ARTIFACTS = f"""
    SELECT {rows.ARTIFACT_COLUMNS} FROM artifacts
    WHERE run_id = %(run)s AND (%(after)s::text IS NULL OR name > %(after)s::text)
    ORDER BY name LIMIT %(limit)s
"""
_ARTIFACT_OF_RUN = "SELECT 1 FROM artifacts WHERE run_id = %s AND name = %s"


class PostgresServiceSide(PostgresBase):
    """The service-object operations of `PostgresStore`."""

    # -- tokens and runners -------------------------------------------------------------

    async def create_token(
        self, tenant_id: str, kind: str, token_hash: str, *, runner_id: str | None = None
    ) -> None:
        rows.token_values(kind, token_hash, runner_id)

        async def body(tx: Tx) -> None:
            await self._insert_token(tx, tenant_id, kind, token_hash, runner_id)

        await self._transact(body)

    async def _insert_token(
        self, tx: Tx, tenant_id: str, kind: str, token_hash: str, runner_id: str | None
    ) -> None:
        await _require_tenant(tx, tenant_id)
        if runner_id is not None and not await tx.one(
            "SELECT 1 FROM runners WHERE id = %s AND tenant_id = %s", (runner_id, tenant_id)
        ):
            raise NotFound(f"runner {runner_id!r} not found")
        values = (token_hash, tenant_id, kind, runner_id, self._clock())
        if not await tx.run(_INSERT_TOKEN, values):
            raise Conflict("this token is already stored")

    async def find_token(self, token_hash: str) -> TokenRecord | None:
        if not rows.is_digest(token_hash):
            return None
        row = await self._one(
            f"SELECT {rows.TOKEN_COLUMNS} FROM tokens WHERE hash = %s", (token_hash,)
        )
        return None if row is None else rows.token(row)

    async def register_runner(
        self,
        tenant_id: str,
        name: str,
        labels: Sequence[str],
        *,
        token_hash: str | None = None,
    ) -> RunnerRecord:
        runner_id, now = self._new_id(), self._clock()
        if token_hash is not None:
            rows.token_values("runner", token_hash, runner_id)
        values = (runner_id, tenant_id, rows.text(name), rows.dump_labels(labels), now, now)

        async def body(tx: Tx) -> RunnerRecord:
            await _require_tenant(tx, tenant_id)
            row = await tx.one(_INSERT_RUNNER, values)
            assert row is not None
            if token_hash is not None:
                await self._insert_token(tx, tenant_id, "runner", token_hash, runner_id)
            return rows.runner(row)

        return await self._transact(body)

    async def get_runner(self, runner_id: str) -> RunnerRecord:
        row = await self._one(
            f"SELECT {rows.RUNNER_COLUMNS} FROM runners WHERE id = %s", (runner_id,)
        )
        if row is None:
            raise NotFound(f"runner {runner_id!r} not found")
        return rows.runner(row)

    async def touch_runner(self, runner_id: str) -> None:
        async def body(tx: Tx) -> None:
            if not await tx.run(
                "UPDATE runners SET last_seen_at = %s WHERE id = %s", (self._clock(), runner_id)
            ):
                raise NotFound(f"runner {runner_id!r} not found")

        await self._transact(body)

    # -- repositories and workflows ---------------------------------------------------

    async def create_repository(self, tenant_id: str, name: str, url: str) -> RepositoryRecord:
        values = (self._new_id(), tenant_id, rows.text(name), rows.text(url), self._clock())

        async def body(tx: Tx) -> RepositoryRecord:
            await _require_tenant(tx, tenant_id)
            row = await tx.one(_INSERT_REPOSITORY, values)
            if row is None:
                raise Conflict(f"repository {name!r} already exists")
            return rows.repository(row)

        return await self._transact(body)

    async def get_repository(self, tenant_id: str, repo_id: str) -> RepositoryRecord:
        row = await self._one(
            f"SELECT {rows.REPOSITORY_COLUMNS} FROM repositories WHERE id = %s AND tenant_id = %s",
            (repo_id, tenant_id),
        )
        if row is None:
            raise NotFound(f"repository {repo_id!r} not found")
        return rows.repository(row)

    async def find_repository(self, tenant_id: str, name: str) -> RepositoryRecord | None:
        row = await self._one(
            f"SELECT {rows.REPOSITORY_COLUMNS} FROM repositories WHERE tenant_id = %s AND name = %s",
            (tenant_id, rows.text(name)),
        )
        return None if row is None else rows.repository(row)

    async def list_repositories(
        self, tenant_id: str, *, after: str | None = None, limit: int | None = None
    ) -> list[RepositoryRecord]:
        params = {"tenant": tenant_id, "after": after, "limit": _limit(limit)}

        async def body(tx: Tx) -> list[RepositoryRecord]:
            if after is not None and not await tx.one(_REPOSITORY_IN_TENANT, (after, tenant_id)):
                raise NotFound(f"repository {after!r} not found")
            return [rows.repository(row) for row in await tx.all(_LIST_REPOSITORIES, params)]

        return await self._read(body)

    async def register_workflow(
        self,
        tenant_id: str,
        path: str,
        source: str,
        name: str,
        *,
        repository_id: str | None = None,
    ) -> WorkflowRecord:
        now = self._clock()
        values = (
            self._new_id(),
            tenant_id,
            repository_id,
            rows.text(path),
            rows.text(name),
            rows.text(source),
            now,
            now,
        )

        async def body(tx: Tx) -> WorkflowRecord:
            await _require_tenant(tx, tenant_id)
            if repository_id is not None and not await tx.one(
                _REPOSITORY_IN_TENANT, (repository_id, tenant_id)
            ):
                raise NotFound(f"repository {repository_id!r} not found")
            row = await tx.one(_REGISTER_WORKFLOW, values)
            assert row is not None
            return rows.workflow(row)

        return await self._transact(body)

    async def get_workflow(self, tenant_id: str, wf_id: str) -> WorkflowRecord:
        row = await self._one(_WORKFLOW, (wf_id, tenant_id))
        if row is None:
            raise NotFound(f"workflow {wf_id!r} not found")
        return rows.workflow(row)

    async def list_workflows(
        self,
        tenant_id: str | None,
        *,
        after: str | None = None,
        limit: int = 50,
        enabled: bool | None = None,
        repository_id: str | None = None,
    ) -> list[WorkflowRecord]:
        params = {
            "tenant": tenant_id,
            "after": after,
            "enabled": enabled,
            "repository": repository_id,
            "limit": max(limit, 0),
        }
        return [rows.workflow(row) for row in await self._all(_LIST_WORKFLOWS, params)]

    async def set_workflow_enabled(
        self, tenant_id: str, wf_id: str, enabled: bool
    ) -> WorkflowRecord:
        async def body(tx: Tx) -> WorkflowRecord:
            row = await tx.one(
                "UPDATE workflows SET enabled = %s, updated_at = %s "
                f"WHERE id = %s AND tenant_id = %s RETURNING {rows.WORKFLOW_COLUMNS}",
                (enabled, self._clock(), wf_id, tenant_id),
            )
            if row is None:
                raise NotFound(f"workflow {wf_id!r} not found")
            return rows.workflow(row)

        return await self._transact(body)

    async def delete_workflow(self, tenant_id: str, wf_id: str) -> None:
        async def body(tx: Tx) -> None:
            if not await tx.run(
                "DELETE FROM workflows WHERE id = %s AND tenant_id = %s", (wf_id, tenant_id)
            ):
                raise NotFound(f"workflow {wf_id!r} not found")

        await self._transact(body)

    # -- artifacts and idempotency keys ----------------------------------------------------

    async def add_artifact(
        self, job_id: str, epoch: int, name: str, size: int, path: str
    ) -> str | None:
        values = {
            "id": self._new_id(),
            "name": name,
            "path": path,
            "size": size,
            "now": self._clock(),
            "job": job_id,
            "epoch": epoch,
        }

        async def body(tx: Tx) -> str | None:
            # FOR SHARE: the reaper cannot take the lease back before this commits.
            run_id = await self._fence(tx, job_id, epoch, "upload an artifact to")
            before = await tx.one(_ARTIFACT_PATH, (run_id, name))
            if not await tx.run(_UPLOAD_ARTIFACT, values):
                raise Conflict(f"run {run_id!r} already has an artifact {name!r}")
            return None if before is None else str(before[0])

        return await self._transact(body)

    async def list_artifacts(
        self, run_id: str, *, after: str | None = None, limit: int | None = None
    ) -> list[ArtifactRecord]:
        params = {"run": run_id, "after": after, "limit": _limit(limit)}

        async def body(tx: Tx) -> list[ArtifactRecord]:
            if not await self._exists(tx, "workflow_runs", run_id):
                raise NotFound(f"run {run_id!r} not found")
            if after is not None and not await tx.one(_ARTIFACT_OF_RUN, (run_id, after)):
                raise NotFound(f"artifact {after!r} of run {run_id!r} not found")
            return [rows.artifact(row) for row in await tx.all(_LIST_ARTIFACTS, params)]

        return await self._read(body)

    async def get_artifact(self, run_id: str, name: str) -> ArtifactRecord:
        row = await self._one(
            f"SELECT {rows.ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = %s AND name = %s",
            (run_id, name),
        )
        if row is None:
            raise NotFound(f"artifact {name!r} of run {run_id!r} not found")
        return rows.artifact(row)

    async def reserve_response(
        self, tenant_id: str, key: str, fingerprint: str, stale_after: float
    ) -> KeyedRequest:
        # The row that won the insert can be gone before it is read (its request failed and
        # released it): reserve again. A key that keeps coming and going is said to be in use.
        for _ in range(_RESERVE_ATTEMPTS):
            reservation, now = self._new_id(), self._clock()
            values = (tenant_id, key, fingerprint, reservation, now, now - stale_after)
            if await self._statement(_RESERVE_KEY, values) is not None:
                return KeyedRequest(fingerprint, reservation)
            row = await self._one(_KEYED_REQUEST, (tenant_id, key))
            if row is not None:
                return rows.keyed_request(row)
        return KeyedRequest(fingerprint)

    async def keep_response(
        self, tenant_id: str, key: str, reservation: str, status: int, body: str
    ) -> bool:
        kept = await self._statement(
            "UPDATE idempotent_responses SET status = %s, body = %s "
            "WHERE tenant_id = %s AND key = %s AND reservation = %s AND status IS NULL "
            "RETURNING 1",
            (status, rows.text(body), tenant_id, key, reservation),
        )
        return kept is not None

    async def release_response(self, tenant_id: str, key: str, reservation: str) -> bool:
        released = await self._statement(
            "DELETE FROM idempotent_responses "
            "WHERE tenant_id = %s AND key = %s AND reservation = %s AND status IS NULL "
            "RETURNING 1",
            (tenant_id, key, reservation),
        )
        return released is not None


def _limit(limit: int | None) -> int | None:
    """A page size for LIMIT: NULL (none) for every row."""
    return None if limit is None else max(limit, 0)


async def _require_tenant(tx: Tx, tenant_id: str) -> None:
    if not await tx.one("SELECT 1 FROM tenants WHERE id = %s", (tenant_id,)):
        raise NotFound(f"tenant {tenant_id!r} not found")

"""What the server keeps around runs in the PostgreSQL store: tokens, runners, repositories, workflows.

Also cron ticks (claimed once, by a unique row, however many servers race
for them), artifacts and the responses remembered for `Idempotency-Key`.
The same semantics as `sqlite_service`; uniqueness races between servers
are settled by `ON CONFLICT`, never by a read before the write.
"""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.engine.records import (
    ArtifactRecord,
    RepositoryRecord,
    RunnerRecord,
    TokenRecord,
    WorkflowRecord,
)
from conveyor.errors import Conflict, NotFound
from conveyor.store import rows
from conveyor.store.postgres_base import PostgresBase, Tx

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
_REPOSITORY_IN_TENANT = "SELECT 1 FROM repositories WHERE id = %s AND tenant_id = %s"


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

    async def list_repositories(self, tenant_id: str) -> list[RepositoryRecord]:
        found = await self._all(
            f"SELECT {rows.REPOSITORY_COLUMNS} FROM repositories "
            "WHERE tenant_id = %s ORDER BY name, id",
            (tenant_id,),
        )
        return [rows.repository(row) for row in found]

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
            await tx.run("DELETE FROM cron_ticks WHERE workflow_id = %s", (wf_id,))

        await self._transact(body)

    # -- artifacts and remembered responses ------------------------------------------------

    async def add_artifact(
        self, run_id: str, name: str, size: int, path: str, *, job_key: str | None = None
    ) -> None:
        values = (self._new_id(), run_id, name, path, size, self._clock(), job_key)

        async def body(tx: Tx) -> None:
            if not await self._exists(tx, "workflow_runs", run_id):
                raise NotFound(f"run {run_id!r} not found")
            if not await tx.run(
                "INSERT INTO artifacts (id, run_id, name, path, size, created_at, job_key) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id, name) DO NOTHING",
                values,
            ):
                raise Conflict(f"run {run_id!r} already has an artifact {name!r}")

        await self._transact(body)

    async def list_artifacts(self, run_id: str) -> list[ArtifactRecord]:
        async def body(tx: Tx) -> list[ArtifactRecord]:
            if not await self._exists(tx, "workflow_runs", run_id):
                raise NotFound(f"run {run_id!r} not found")
            found = await tx.all(
                f"SELECT {rows.ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = %s ORDER BY name",
                (run_id,),
            )
            return [rows.artifact(row) for row in found]

        return await self._read(body)

    async def get_artifact(self, run_id: str, name: str) -> ArtifactRecord:
        row = await self._one(
            f"SELECT {rows.ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = %s AND name = %s",
            (run_id, name),
        )
        if row is None:
            raise NotFound(f"artifact {name!r} of run {run_id!r} not found")
        return rows.artifact(row)

    async def remember_response(
        self, tenant_id: str, key: str, method: str, path: str, status: int, body: str
    ) -> bool:
        values = (tenant_id, key, method, path, status, rows.text(body), self._clock())

        async def write(tx: Tx) -> bool:
            kept = await tx.run(
                "INSERT INTO idempotent_responses (tenant_id, key, method, path, status, body, "
                "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                values,
            )
            return kept == 1

        return await self._transact(write)

    async def recall_response(
        self, tenant_id: str, key: str, method: str, path: str
    ) -> tuple[int, str] | None:
        row = await self._one(
            "SELECT status, body FROM idempotent_responses "
            "WHERE tenant_id = %s AND key = %s AND method = %s AND path = %s",
            (tenant_id, key, method, path),
        )
        return None if row is None else (int(row[0]), str(row[1]))


async def _require_tenant(tx: Tx, tenant_id: str) -> None:
    if not await tx.one("SELECT 1 FROM tenants WHERE id = %s", (tenant_id,)):
        raise NotFound(f"tenant {tenant_id!r} not found")

"""What the server keeps around runs in the SQLite store: tokens, runners, repositories, workflows.

Also cron ticks (claimed once), artifacts and `Idempotency-Key` reservations
with the answers stored for them. None of these is a state transition: they write no
outbox row. Objects looked up with a tenant are NotFound in any other. An
artifact upload is a runner write, fenced in its statement by the lease
epoch of the job uploading it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from conveyor.engine.records import (
    ArtifactRecord,
    KeyedRequest,
    RepositoryRecord,
    RunnerRecord,
    TokenRecord,
    WorkflowRecord,
)
from conveyor.errors import Conflict, LeaseLost, NotFound, StoreError
from conveyor.store import rows
from conveyor.store.sqlite_base import LEASED_IN, SqliteBase

_INSERT_TOKEN = """
    INSERT INTO tokens (hash, tenant_id, kind, runner_id, created_at) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (hash) DO NOTHING
"""
_INSERT_RUNNER = f"""
    INSERT INTO runners (id, tenant_id, name, labels, created_at, last_seen_at)
    VALUES (?, ?, ?, ?, ?, ?)
    RETURNING {rows.RUNNER_COLUMNS}
"""
_INSERT_REPOSITORY = f"""
    INSERT INTO repositories (id, tenant_id, name, url, created_at) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (tenant_id, name) DO NOTHING
    RETURNING {rows.REPOSITORY_COLUMNS}
"""
_REGISTER_WORKFLOW = f"""
    INSERT INTO workflows (id, tenant_id, repository_id, path, name, source, enabled,
        created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)
    ON CONFLICT (tenant_id, COALESCE(repository_id, ''), path) DO UPDATE SET
        name = excluded.name, source = excluded.source, updated_at = excluded.updated_at
    RETURNING {rows.WORKFLOW_COLUMNS}
"""
_WORKFLOW = f"SELECT {rows.WORKFLOW_COLUMNS} FROM workflows WHERE id = ? AND tenant_id = ?"
# Pages by name, then id; LIMIT -1 is no limit. `after` is known to be one of the tenant's.
_LIST_REPOSITORIES = f"""
    SELECT {rows.REPOSITORY_COLUMNS} FROM repositories
    WHERE tenant_id = ?1
      AND (?2 IS NULL OR (name, id) > (SELECT name, id FROM repositories WHERE id = ?2))
    ORDER BY name, id LIMIT ?3
"""
_REPOSITORY_IN_TENANT = "SELECT 1 FROM repositories WHERE id = ? AND tenant_id = ?"
# The first request with a key inserts its row; a stale reservation of the same
# request (its server died) is taken over. RETURNING: a row when the caller holds it.
_RESERVE_KEY = """
    INSERT INTO idempotent_responses (tenant_id, key, fingerprint, reservation, reserved_at)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (tenant_id, key) DO UPDATE SET
        reservation = excluded.reservation, reserved_at = excluded.reserved_at
    WHERE idempotent_responses.status IS NULL
      AND idempotent_responses.fingerprint = excluded.fingerprint
      AND idempotent_responses.reserved_at < ?
    RETURNING 1
"""
_KEYED_REQUEST = (
    "SELECT fingerprint, status, body FROM idempotent_responses WHERE tenant_id = ? AND key = ?"
)

# An upload, fenced by the job's lease: a name new to the run is inserted; a name the same
# job uploaded under an earlier epoch (an execution the reaper took back) is replaced.
_UPLOAD_ARTIFACT = f"""
    INSERT INTO artifacts (id, run_id, name, path, size, created_at, job_key, job_id, epoch)
    SELECT ?1, run_id, ?2, ?3, ?4, ?5, key, id, lease_epoch FROM jobs
    WHERE id = ?6 AND lease_epoch = ?7 AND status IN {LEASED_IN}
    ON CONFLICT (run_id, name) DO UPDATE SET
        path = excluded.path, size = excluded.size, created_at = excluded.created_at,
        epoch = excluded.epoch
    WHERE artifacts.job_id = excluded.job_id AND artifacts.epoch < excluded.epoch
"""
_ARTIFACT_PATH = """
    SELECT a.path FROM artifacts AS a JOIN jobs AS j ON a.run_id = j.run_id
    WHERE j.id = ? AND a.name = ?
"""
_LIST_ARTIFACTS = f"""
    SELECT {rows.ARTIFACT_COLUMNS} FROM artifacts
    WHERE run_id = ?1 AND (?2 IS NULL OR name > ?2)
    ORDER BY name LIMIT ?3
"""
_ARTIFACT_OF_RUN = "SELECT 1 FROM artifacts WHERE run_id = ? AND name = ?"


class SqliteServiceSide(SqliteBase):
    """The service-object operations of `SqliteStore`."""

    # -- tokens and runners -------------------------------------------------------------

    async def create_token(
        self, tenant_id: str, kind: str, token_hash: str, *, runner_id: str | None = None
    ) -> None:
        rows.token_values(kind, token_hash, runner_id)
        with self._write() as db:
            self._insert_token(db, tenant_id, kind, token_hash, runner_id)

    def _insert_token(
        self,
        db: sqlite3.Connection,
        tenant_id: str,
        kind: str,
        token_hash: str,
        runner_id: str | None,
    ) -> None:
        _require_tenant(db, tenant_id)
        if (
            runner_id is not None
            and not db.execute(
                "SELECT 1 FROM runners WHERE id = ? AND tenant_id = ?", (runner_id, tenant_id)
            ).fetchone()
        ):
            raise NotFound(f"runner {runner_id!r} not found")
        values = (token_hash, tenant_id, kind, runner_id, self._clock())
        if not db.execute(_INSERT_TOKEN, values).rowcount:
            raise Conflict("this token is already stored")

    async def find_token(self, token_hash: str) -> TokenRecord | None:
        if not rows.is_digest(token_hash):
            return None
        with self._read() as db:
            row = db.execute(
                f"SELECT {rows.TOKEN_COLUMNS} FROM tokens WHERE hash = ?", (token_hash,)
            ).fetchone()
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
        with self._write() as db:
            _require_tenant(db, tenant_id)
            runner = rows.runner(db.execute(_INSERT_RUNNER, values).fetchone())
            if token_hash is not None:
                self._insert_token(db, tenant_id, "runner", token_hash, runner_id)
            return runner

    async def get_runner(self, runner_id: str) -> RunnerRecord:
        with self._read() as db:
            row = db.execute(
                f"SELECT {rows.RUNNER_COLUMNS} FROM runners WHERE id = ?", (runner_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"runner {runner_id!r} not found")
        return rows.runner(row)

    async def touch_runner(self, runner_id: str) -> None:
        with self._write() as db:
            if not db.execute(
                "UPDATE runners SET last_seen_at = ? WHERE id = ?", (self._clock(), runner_id)
            ).rowcount:
                raise NotFound(f"runner {runner_id!r} not found")

    # -- repositories and workflows ---------------------------------------------------

    async def create_repository(self, tenant_id: str, name: str, url: str) -> RepositoryRecord:
        values = (self._new_id(), tenant_id, rows.text(name), rows.text(url), self._clock())
        with self._write() as db:
            _require_tenant(db, tenant_id)
            row = db.execute(_INSERT_REPOSITORY, values).fetchone()
            if row is None:
                raise Conflict(f"repository {name!r} already exists")
            return rows.repository(row)

    async def get_repository(self, tenant_id: str, repo_id: str) -> RepositoryRecord:
        with self._read() as db:
            row = db.execute(
                f"SELECT {rows.REPOSITORY_COLUMNS} FROM repositories "
                "WHERE id = ? AND tenant_id = ?",
                (repo_id, tenant_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"repository {repo_id!r} not found")
        return rows.repository(row)

    async def find_repository(self, tenant_id: str, name: str) -> RepositoryRecord | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {rows.REPOSITORY_COLUMNS} FROM repositories "
                "WHERE tenant_id = ? AND name = ?",
                (tenant_id, rows.text(name)),
            ).fetchone()
        return None if row is None else rows.repository(row)

    async def list_repositories(
        self, tenant_id: str, *, after: str | None = None, limit: int | None = None
    ) -> list[RepositoryRecord]:
        with self._read() as db:
            if (
                after is not None
                and db.execute(_REPOSITORY_IN_TENANT, (after, tenant_id)).fetchone() is None
            ):
                raise NotFound(f"repository {after!r} not found")
            found = db.execute(_LIST_REPOSITORIES, (tenant_id, after, _limit(limit))).fetchall()
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
        with self._write() as db:
            _require_tenant(db, tenant_id)
            if (
                repository_id is not None
                and not db.execute(_REPOSITORY_IN_TENANT, (repository_id, tenant_id)).fetchone()
            ):
                raise NotFound(f"repository {repository_id!r} not found")
            return rows.workflow(db.execute(_REGISTER_WORKFLOW, values).fetchone())

    async def get_workflow(self, tenant_id: str, wf_id: str) -> WorkflowRecord:
        with self._read() as db:
            row = db.execute(_WORKFLOW, (wf_id, tenant_id)).fetchone()
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
        sql = (
            f"SELECT {rows.WORKFLOW_COLUMNS} FROM workflows "
            "WHERE (?1 IS NULL OR tenant_id = ?1) AND (?2 IS NULL OR id > ?2) "
            "AND (?3 IS NULL OR enabled = ?3) AND (?4 IS NULL OR repository_id = ?4) "
            "ORDER BY id LIMIT ?5"
        )
        params = (tenant_id, after, enabled, repository_id, max(limit, 0))
        with self._read() as db:
            return [rows.workflow(row) for row in db.execute(sql, params)]

    async def set_workflow_enabled(
        self, tenant_id: str, wf_id: str, enabled: bool
    ) -> WorkflowRecord:
        with self._write() as db:
            row = db.execute(
                "UPDATE workflows SET enabled = ?, updated_at = ? WHERE id = ? AND tenant_id = ? "
                f"RETURNING {rows.WORKFLOW_COLUMNS}",
                (enabled, self._clock(), wf_id, tenant_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"workflow {wf_id!r} not found")
            return rows.workflow(row)

    async def delete_workflow(self, tenant_id: str, wf_id: str) -> None:
        with self._write() as db:
            if not db.execute(
                "DELETE FROM workflows WHERE id = ? AND tenant_id = ?", (wf_id, tenant_id)
            ).rowcount:
                raise NotFound(f"workflow {wf_id!r} not found")

    # -- artifacts and idempotency keys ----------------------------------------------------

    async def add_artifact(
        self, job_id: str, epoch: int, name: str, size: int, path: str
    ) -> str | None:
        values = (self._new_id(), name, path, size, self._clock(), job_id, epoch)
        with self._write() as db:
            before = db.execute(_ARTIFACT_PATH, (job_id, name)).fetchone()
            if not db.execute(_UPLOAD_ARTIFACT, values).rowcount:
                raise _upload_refusal(db, job_id, epoch, name)
            return None if before is None else str(before[0])

    async def list_artifacts(
        self, run_id: str, *, after: str | None = None, limit: int | None = None
    ) -> list[ArtifactRecord]:
        with self._read() as db:
            _require_run(db, run_id)
            if (
                after is not None
                and db.execute(_ARTIFACT_OF_RUN, (run_id, after)).fetchone() is None
            ):
                raise NotFound(f"artifact {after!r} of run {run_id!r} not found")
            found = db.execute(_LIST_ARTIFACTS, (run_id, after, _limit(limit))).fetchall()
        return [rows.artifact(row) for row in found]

    async def get_artifact(self, run_id: str, name: str) -> ArtifactRecord:
        with self._read() as db:
            row = db.execute(
                f"SELECT {rows.ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = ? AND name = ?",
                (run_id, name),
            ).fetchone()
        if row is None:
            raise NotFound(f"artifact {name!r} of run {run_id!r} not found")
        return rows.artifact(row)

    async def reserve_response(
        self, tenant_id: str, key: str, fingerprint: str, stale_after: float
    ) -> KeyedRequest:
        reservation, now = self._new_id(), self._clock()
        values = (tenant_id, key, fingerprint, reservation, now, now - stale_after)
        with self._write() as db:
            if db.execute(_RESERVE_KEY, values).fetchone() is not None:
                return KeyedRequest(fingerprint, reservation)
            row = db.execute(_KEYED_REQUEST, (tenant_id, key)).fetchone()
        return rows.keyed_request(row)

    async def keep_response(
        self, tenant_id: str, key: str, reservation: str, status: int, body: str
    ) -> bool:
        values = (status, rows.text(body), tenant_id, key, reservation)
        with self._write() as db:
            kept: int = db.execute(
                "UPDATE idempotent_responses SET status = ?, body = ? "
                "WHERE tenant_id = ? AND key = ? AND reservation = ? AND status IS NULL",
                values,
            ).rowcount
            return kept == 1

    async def release_response(self, tenant_id: str, key: str, reservation: str) -> bool:
        with self._write() as db:
            released: int = db.execute(
                "DELETE FROM idempotent_responses "
                "WHERE tenant_id = ? AND key = ? AND reservation = ? AND status IS NULL",
                (tenant_id, key, reservation),
            ).rowcount
            return released == 1


def _limit(limit: int | None) -> int:
    """A page size for LIMIT: -1 (none) for every row."""
    return -1 if limit is None else max(limit, 0)


def _require_tenant(db: sqlite3.Connection, tenant_id: str) -> None:
    if db.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)).fetchone() is None:
        raise NotFound(f"tenant {tenant_id!r} not found")


def _upload_refusal(db: sqlite3.Connection, job_id: str, epoch: int, name: str) -> StoreError:
    """Why an upload wrote nothing: the lease, or else the name is taken."""
    refusal = SqliteBase._refusal(db, job_id, "upload an artifact to", epoch)
    if isinstance(refusal, LeaseLost | NotFound):
        return refusal
    return Conflict(f"the run of job {job_id!r} already has an artifact {name!r}")


def _require_run(db: sqlite3.Connection, run_id: str) -> None:
    if db.execute("SELECT 1 FROM workflow_runs WHERE id = ?", (run_id,)).fetchone() is None:
        raise NotFound(f"run {run_id!r} not found")

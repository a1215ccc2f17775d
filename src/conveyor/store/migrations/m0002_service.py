"""Version 2: what the server needs: tokens, repositories, workflows, cron ticks, responses.

Runs learn their workflow and concurrency group, and get the indexes the
run listing pages through. Tokens are SHA-256 hex digests, never the token.
"""

NAME = "service"

# Statements both backends run unchanged: the REAL/DOUBLE PRECISION and
# INTEGER/BOOLEAN columns are spelled per backend below.
_RUN_COLUMNS: tuple[str, ...] = (
    "ALTER TABLE workflow_runs ADD COLUMN workflow_id TEXT",
    "ALTER TABLE workflow_runs ADD COLUMN concurrency_group TEXT",
    "CREATE INDEX workflow_runs_listing ON workflow_runs (tenant_id, created_at, id)",
    "CREATE INDEX workflow_runs_workflow ON workflow_runs (workflow_id, created_at, id)",
    # Only unfinished runs of a group matter (cancel-in-progress): a partial index.
    """
    CREATE INDEX workflow_runs_group ON workflow_runs (tenant_id, concurrency_group)
        WHERE concurrency_group IS NOT NULL AND status <> 'completed'
    """,
)


def _tables(time: str, flag: str, true: str, tail: str) -> tuple[str, ...]:
    return (
        f"""
        CREATE TABLE tokens (
            hash        TEXT PRIMARY KEY,
            tenant_id   TEXT NOT NULL REFERENCES tenants (id),
            kind        TEXT NOT NULL CHECK (kind IN ('admin', 'registration', 'runner')),
            runner_id   TEXT REFERENCES runners (id) ON DELETE CASCADE,
            created_at  {time} NOT NULL,
            CHECK ((kind = 'runner') = (runner_id IS NOT NULL))
        ){tail}
        """,
        f"""
        CREATE TABLE repositories (
            id          TEXT PRIMARY KEY,
            tenant_id   TEXT NOT NULL REFERENCES tenants (id),
            name        TEXT NOT NULL,
            url         TEXT NOT NULL,
            created_at  {time} NOT NULL
        )
        """,
        "CREATE UNIQUE INDEX repositories_name ON repositories (tenant_id, name)",
        f"""
        CREATE TABLE workflows (
            id             TEXT PRIMARY KEY,
            tenant_id      TEXT NOT NULL REFERENCES tenants (id),
            repository_id  TEXT REFERENCES repositories (id),
            path           TEXT NOT NULL,
            name           TEXT NOT NULL,
            source         TEXT NOT NULL,
            enabled        {flag} NOT NULL DEFAULT {true},
            created_at     {time} NOT NULL,
            updated_at     {time} NOT NULL
        )
        """,
        # One row per (repository, path); '' stands for "no repository" so NULLs collide.
        """
        CREATE UNIQUE INDEX workflows_path
            ON workflows (tenant_id, COALESCE(repository_id, ''), path)
        """,
        "CREATE INDEX workflows_tenant ON workflows (tenant_id, id)",
        f"""
        CREATE TABLE cron_ticks (
            workflow_id  TEXT NOT NULL,
            cron         TEXT NOT NULL,
            tick         {time} NOT NULL,
            claimed_at   {time} NOT NULL,
            PRIMARY KEY (workflow_id, cron, tick)
        ){tail}
        """,
        f"""
        CREATE TABLE idempotent_responses (
            tenant_id   TEXT NOT NULL,
            key         TEXT NOT NULL,
            method      TEXT NOT NULL,
            path        TEXT NOT NULL,
            status      INTEGER NOT NULL,
            body        TEXT NOT NULL,
            created_at  {time} NOT NULL,
            PRIMARY KEY (tenant_id, key, method, path)
        ){tail}
        """,
    )


SQLITE: tuple[str, ...] = _RUN_COLUMNS + _tables("REAL", "INTEGER", "1", " WITHOUT ROWID")
POSTGRES: tuple[str, ...] = _RUN_COLUMNS + _tables("DOUBLE PRECISION", "BOOLEAN", "TRUE", "")

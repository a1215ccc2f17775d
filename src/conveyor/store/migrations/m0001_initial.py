"""Version 1: tenants, runs, jobs, steps, log lines, outbox, cursors, runners, artifacts.

Times are seconds since the epoch (REAL); JSON columns are TEXT. Status
values are spelled out here, not imported: a migration is frozen history.
`SQLITE` and `POSTGRES` are the same version for each backend.
"""

NAME = "initial"

SQLITE: tuple[str, ...] = (
    """
    CREATE TABLE tenants (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        created_at  REAL NOT NULL
    )
    """,
    "INSERT INTO tenants (id, name, created_at) VALUES ('default', 'default', 0)",
    """
    CREATE TABLE workflow_runs (
        id               TEXT PRIMARY KEY,
        tenant_id        TEXT NOT NULL REFERENCES tenants (id),
        repository_id    TEXT,
        workflow_path    TEXT NOT NULL,
        workflow_name    TEXT NOT NULL,
        event            TEXT NOT NULL,
        payload          TEXT NOT NULL,
        ref              TEXT,
        sha              TEXT,
        inputs           TEXT NOT NULL,
        status           TEXT NOT NULL
                         CHECK (status IN ('queued', 'in_progress', 'completed')),
        conclusion       TEXT
                         CHECK (conclusion IN ('success', 'failure', 'cancelled', 'skipped')),
        attempt          INTEGER NOT NULL,
        run_number       INTEGER NOT NULL,
        idempotency_key  TEXT,
        created_at       REAL NOT NULL,
        started_at       REAL,
        completed_at     REAL
    )
    """,
    """
    CREATE UNIQUE INDEX workflow_runs_idempotency
        ON workflow_runs (tenant_id, idempotency_key)
    """,
    """
    CREATE INDEX workflow_runs_number
        ON workflow_runs (tenant_id, repository_id, workflow_path, run_number)
    """,
    "CREATE INDEX workflow_runs_tenant_status ON workflow_runs (tenant_id, status)",
    """
    CREATE TABLE jobs (
        id                TEXT PRIMARY KEY,
        run_id            TEXT NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
        tenant_id         TEXT NOT NULL,
        key               TEXT NOT NULL,
        name              TEXT NOT NULL,
        needs             TEXT NOT NULL,
        labels            TEXT NOT NULL,
        matrix            TEXT,
        spec              TEXT NOT NULL,
        status            TEXT NOT NULL
                          CHECK (status IN ('pending', 'queued', 'acquired', 'running',
                                            'completed', 'failed', 'cancelled', 'skipped')),
        conclusion        TEXT
                          CHECK (conclusion IN ('success', 'failure', 'cancelled', 'skipped')),
        outputs           TEXT NOT NULL DEFAULT '{}',
        lease_owner       TEXT,
        lease_epoch       INTEGER NOT NULL DEFAULT 0,
        lease_expires_at  REAL,
        retry_count       INTEGER NOT NULL DEFAULT 0,
        cancel_requested  INTEGER NOT NULL DEFAULT 0,
        reason            TEXT,
        log_seq           INTEGER NOT NULL DEFAULT 0,
        created_at        REAL NOT NULL,
        queued_at         REAL,
        started_at        REAL,
        completed_at      REAL
    )
    """,
    "CREATE INDEX jobs_run ON jobs (run_id)",
    "CREATE INDEX jobs_tenant ON jobs (tenant_id)",
    # Partial indexes: only live rows, so the queue and reaper scans stay small.
    "CREATE INDEX jobs_queue ON jobs (queued_at) WHERE status = 'queued'",
    """
    CREATE INDEX jobs_lease ON jobs (lease_expires_at)
        WHERE status IN ('acquired', 'running')
    """,
    """
    CREATE TABLE steps (
        job_id        TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        step_index    INTEGER NOT NULL,
        epoch         INTEGER NOT NULL,
        step_id       TEXT,
        name          TEXT NOT NULL,
        status        TEXT NOT NULL
                      CHECK (status IN ('pending', 'running', 'completed', 'failed', 'skipped')),
        outcome       TEXT
                      CHECK (outcome IN ('success', 'failure', 'cancelled', 'skipped')),
        conclusion    TEXT
                      CHECK (conclusion IN ('success', 'failure', 'cancelled', 'skipped')),
        outputs       TEXT NOT NULL DEFAULT '{}',
        started_at    REAL,
        completed_at  REAL,
        PRIMARY KEY (job_id, step_index)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE log_lines (
        job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        seq         INTEGER NOT NULL,
        step_index  INTEGER,
        text        TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    )
    """,
    # AUTOINCREMENT: an id is never reused, even after old events are pruned.
    """
    CREATE TABLE outbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        kind        TEXT NOT NULL,
        run_id      TEXT NOT NULL,
        job_id      TEXT,
        data        TEXT NOT NULL,
        created_at  REAL NOT NULL
    )
    """,
    """
    CREATE TABLE consumer_cursors (
        consumer    TEXT PRIMARY KEY,
        position    INTEGER NOT NULL,
        updated_at  REAL NOT NULL
    )
    """,
    """
    CREATE TABLE runners (
        id            TEXT PRIMARY KEY,
        tenant_id     TEXT NOT NULL REFERENCES tenants (id),
        name          TEXT NOT NULL,
        labels        TEXT NOT NULL,
        created_at    REAL NOT NULL,
        last_seen_at  REAL
    )
    """,
    "CREATE INDEX runners_tenant ON runners (tenant_id)",
    """
    CREATE TABLE artifacts (
        id          TEXT PRIMARY KEY,
        run_id      TEXT NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        path        TEXT NOT NULL,
        size        INTEGER NOT NULL,
        created_at  REAL NOT NULL
    )
    """,
    "CREATE UNIQUE INDEX artifacts_run_name ON artifacts (run_id, name)",
)

# The same version on PostgreSQL: times are DOUBLE PRECISION, flags BOOLEAN, JSON
# stays TEXT (jsonb refuses the \u0000 escape that JSON text may hold), and
# `seq` gives jobs the insertion order SQLite's rowid gives them.
POSTGRES: tuple[str, ...] = (
    """
    CREATE TABLE tenants (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL
    )
    """,
    "INSERT INTO tenants (id, name, created_at) VALUES ('default', 'default', 0)",
    """
    CREATE TABLE workflow_runs (
        id               TEXT PRIMARY KEY,
        tenant_id        TEXT NOT NULL REFERENCES tenants (id),
        repository_id    TEXT,
        workflow_path    TEXT NOT NULL,
        workflow_name    TEXT NOT NULL,
        event            TEXT NOT NULL,
        payload          TEXT NOT NULL,
        ref              TEXT,
        sha              TEXT,
        inputs           TEXT NOT NULL,
        status           TEXT NOT NULL
                         CHECK (status IN ('queued', 'in_progress', 'completed')),
        conclusion       TEXT
                         CHECK (conclusion IN ('success', 'failure', 'cancelled', 'skipped')),
        attempt          INTEGER NOT NULL,
        run_number       INTEGER NOT NULL,
        idempotency_key  TEXT,
        created_at       DOUBLE PRECISION NOT NULL,
        started_at       DOUBLE PRECISION,
        completed_at     DOUBLE PRECISION
    )
    """,
    """
    CREATE UNIQUE INDEX workflow_runs_idempotency
        ON workflow_runs (tenant_id, idempotency_key)
    """,
    """
    CREATE INDEX workflow_runs_number
        ON workflow_runs (tenant_id, repository_id, workflow_path, run_number)
    """,
    "CREATE INDEX workflow_runs_tenant_status ON workflow_runs (tenant_id, status)",
    """
    CREATE TABLE jobs (
        id                TEXT PRIMARY KEY,
        seq               BIGINT GENERATED ALWAYS AS IDENTITY,
        run_id            TEXT NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
        tenant_id         TEXT NOT NULL,
        key               TEXT NOT NULL,
        name              TEXT NOT NULL,
        needs             TEXT NOT NULL,
        labels            TEXT NOT NULL,
        matrix            TEXT,
        spec              TEXT NOT NULL,
        status            TEXT NOT NULL
                          CHECK (status IN ('pending', 'queued', 'acquired', 'running',
                                            'completed', 'failed', 'cancelled', 'skipped')),
        conclusion        TEXT
                          CHECK (conclusion IN ('success', 'failure', 'cancelled', 'skipped')),
        outputs           TEXT NOT NULL DEFAULT '{}',
        lease_owner       TEXT,
        lease_epoch       INTEGER NOT NULL DEFAULT 0,
        lease_expires_at  DOUBLE PRECISION,
        retry_count       INTEGER NOT NULL DEFAULT 0,
        cancel_requested  BOOLEAN NOT NULL DEFAULT FALSE,
        reason            TEXT,
        log_seq           BIGINT NOT NULL DEFAULT 0,
        created_at        DOUBLE PRECISION NOT NULL,
        queued_at         DOUBLE PRECISION,
        started_at        DOUBLE PRECISION,
        completed_at      DOUBLE PRECISION
    )
    """,
    "CREATE INDEX jobs_run ON jobs (run_id, seq)",
    "CREATE INDEX jobs_tenant ON jobs (tenant_id)",
    # Partial indexes: only live rows, so the queue and reaper scans stay small.
    "CREATE INDEX jobs_queue ON jobs (queued_at, seq) WHERE status = 'queued'",
    """
    CREATE INDEX jobs_lease ON jobs (lease_expires_at)
        WHERE status IN ('acquired', 'running')
    """,
    """
    CREATE TABLE steps (
        job_id        TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        step_index    INTEGER NOT NULL,
        epoch         INTEGER NOT NULL,
        step_id       TEXT,
        name          TEXT NOT NULL,
        status        TEXT NOT NULL
                      CHECK (status IN ('pending', 'running', 'completed', 'failed', 'skipped')),
        outcome       TEXT
                      CHECK (outcome IN ('success', 'failure', 'cancelled', 'skipped')),
        conclusion    TEXT
                      CHECK (conclusion IN ('success', 'failure', 'cancelled', 'skipped')),
        outputs       TEXT NOT NULL DEFAULT '{}',
        started_at    DOUBLE PRECISION,
        completed_at  DOUBLE PRECISION,
        PRIMARY KEY (job_id, step_index)
    )
    """,
    """
    CREATE TABLE log_lines (
        job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        seq         BIGINT NOT NULL,
        step_index  INTEGER,
        text        TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    )
    """,
    # Ids come from a sequence but are taken in commit order: see conveyor.store.postgres_base.
    """
    CREATE TABLE outbox (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind        TEXT NOT NULL,
        run_id      TEXT NOT NULL,
        job_id      TEXT,
        data        TEXT NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL
    )
    """,
    """
    CREATE TABLE consumer_cursors (
        consumer    TEXT PRIMARY KEY,
        position    BIGINT NOT NULL,
        updated_at  DOUBLE PRECISION NOT NULL
    )
    """,
    """
    CREATE TABLE runners (
        id            TEXT PRIMARY KEY,
        tenant_id     TEXT NOT NULL REFERENCES tenants (id),
        name          TEXT NOT NULL,
        labels        TEXT NOT NULL,
        created_at    DOUBLE PRECISION NOT NULL,
        last_seen_at  DOUBLE PRECISION
    )
    """,
    "CREATE INDEX runners_tenant ON runners (tenant_id)",
    """
    CREATE TABLE artifacts (
        id          TEXT PRIMARY KEY,
        run_id      TEXT NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        path        TEXT NOT NULL,
        size        BIGINT NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL
    )
    """,
    "CREATE UNIQUE INDEX artifacts_run_name ON artifacts (run_id, name)",
)

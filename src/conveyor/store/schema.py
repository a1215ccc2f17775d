"""Schema versions: the ordered migrations and applying them when a store opens.

The database records every applied version in `schema_version`; opening
applies the missing ones in a single transaction, so a crash mid-way leaves
the previous version intact and two processes opening the same file at once
migrate it once. PostgreSQL runs the same versions (its own statements) in
`conveyor.store.postgres_schema`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from conveyor.errors import StoreError
from conveyor.store.migrations import (
    m0001_initial,
    m0002_service,
    m0003_report_seq,
    m0004_artifact_job,
    m0005_one_statement_writes,
    m0006_handed_with,
    m0007_idempotency_reservations,
    m0008_artifact_epoch,
    m0009_no_cron_ticks,
)


@dataclass(frozen=True)
class Migration:
    """One schema version: its statements for each backend, applied in order."""

    version: int
    name: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, m0001_initial.NAME, m0001_initial.SQLITE, m0001_initial.POSTGRES),
    Migration(2, m0002_service.NAME, m0002_service.SQLITE, m0002_service.POSTGRES),
    Migration(3, m0003_report_seq.NAME, m0003_report_seq.SQLITE, m0003_report_seq.POSTGRES),
    Migration(4, m0004_artifact_job.NAME, m0004_artifact_job.SQLITE, m0004_artifact_job.POSTGRES),
    Migration(
        5,
        m0005_one_statement_writes.NAME,
        m0005_one_statement_writes.SQLITE,
        m0005_one_statement_writes.POSTGRES,
    ),
    Migration(6, m0006_handed_with.NAME, m0006_handed_with.SQLITE, m0006_handed_with.POSTGRES),
    Migration(
        7,
        m0007_idempotency_reservations.NAME,
        m0007_idempotency_reservations.SQLITE,
        m0007_idempotency_reservations.POSTGRES,
    ),
    Migration(
        8, m0008_artifact_epoch.NAME, m0008_artifact_epoch.SQLITE, m0008_artifact_epoch.POSTGRES
    ),
    Migration(
        9, m0009_no_cron_ticks.NAME, m0009_no_cron_ticks.SQLITE, m0009_no_cron_ticks.POSTGRES
    ),
)
LATEST: int = MIGRATIONS[-1].version

VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS schema_version (
        version     INTEGER PRIMARY KEY,
        name        TEXT NOT NULL,
        applied_at  {time} NOT NULL
    )
"""


def newer_than_supported(found: int) -> StoreError:
    return StoreError(
        f"database schema version {found} is newer than this Conveyor "
        f"supports ({LATEST}); upgrade Conveyor"
    )


def sqlite_version(db: sqlite3.Connection) -> int:
    """The schema version of `db` (0 for an empty database)."""
    found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if found is None:
        return 0
    (version,) = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(version)


def migrate_sqlite(db: sqlite3.Connection, clock: Callable[[], float], target: int = LATEST) -> int:
    """Apply every migration up to `target` in one transaction; the version found.

    `db` must be in autocommit mode (`isolation_level=None`). A database
    newer than this code is refused rather than used half-understood.
    """
    try:
        found = sqlite_version(db)
        if found == target:
            return found
        db.execute("BEGIN IMMEDIATE")
        try:
            found = sqlite_version(db)  # another process may have migrated meanwhile
            if found > LATEST:
                raise newer_than_supported(found)
            db.execute(VERSION_TABLE.format(time="REAL"))
            for migration in MIGRATIONS:
                if found < migration.version <= target:
                    for statement in migration.sqlite:
                        db.execute(statement)
                    db.execute(
                        "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                        (migration.version, migration.name, clock()),
                    )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise StoreError(f"cannot migrate the database schema: {exc}") from exc
    return found

"""Schema versions on PostgreSQL: the same numbered migrations as SQLite, applied at open.

Applying runs in one transaction (PostgreSQL's DDL is transactional) under
an advisory lock, so a failure leaves the previous version intact and
servers starting together migrate once. `schema`, when given, is created
first; the connection's `search_path` already points at it.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import sql

from conveyor.errors import StoreError
from conveyor.store.postgres_base import Connection, lock_key
from conveyor.store.schema import LATEST, MIGRATIONS, VERSION_TABLE, newer_than_supported


async def postgres_version(conn: Connection) -> int:
    """The schema version in the connection's schema (0 when it holds no Conveyor tables)."""
    cursor = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    found = await cursor.fetchone()
    if found is None or not found[0]:
        return 0
    cursor = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


async def migrate_postgres(
    conn: Connection,
    clock: Callable[[], float],
    schema: str | None,
    target: int = LATEST,
) -> int:
    """Apply every migration up to `target` in one transaction; the version found.

    A database newer than this code is refused rather than used half-understood.
    """
    try:
        return await _migrate(conn, clock, schema, target)
    except psycopg.Error as exc:
        raise StoreError(f"cannot migrate the database schema: {exc}") from exc


async def _migrate(
    conn: Connection, clock: Callable[[], float], schema: str | None, target: int
) -> int:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("migrate", schema),))
        if schema is not None:
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
        found = await postgres_version(conn)
        if found > LATEST:
            raise newer_than_supported(found)
        if found >= target:
            return found
        await conn.execute(VERSION_TABLE.format(time="DOUBLE PRECISION"))
        for migration in MIGRATIONS:
            if found < migration.version <= target:
                for statement in migration.postgres:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, clock()),
                )
    return found

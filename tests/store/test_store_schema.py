"""Migrations: from empty and from every earlier version to the latest, atomically."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conveyor.engine.records import NewRun
from conveyor.errors import StoreError
from conveyor.store.schema import LATEST, MIGRATIONS, migrate_sqlite, sqlite_version
from conveyor.store.sqlite import SqliteStore

TABLES = {
    "schema_version",
    "tenants",
    "workflow_runs",
    "jobs",
    "steps",
    "log_lines",
    "outbox",
    "consumer_cursors",
    "runners",
    "artifacts",
}


def new_run() -> NewRun:
    return NewRun("ci.yml", "CI", "push", {}, "refs/heads/main", "abc", {})


def schema_of(path: Path) -> set[tuple[str, str, str]]:
    with sqlite3.connect(path) as db:
        found = db.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchall()
    db.close()
    return {(kind, name, sql) for kind, name, sql in found}


def test_versions_are_numbered_one_by_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))


async def test_open_creates_the_latest_schema(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = await SqliteStore.open(str(path))
    await store.close()
    with sqlite3.connect(path) as db:
        assert sqlite_version(db) == LATEST
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()
    assert {name for kind, name, _ in schema_of(path) if kind == "table"} >= TABLES


@pytest.mark.parametrize("start", range(LATEST))
async def test_migrates_from_every_earlier_version(tmp_path: Path, start: int) -> None:
    fresh, old = tmp_path / "fresh.db", tmp_path / "old.db"
    await (await SqliteStore.open(str(fresh))).close()
    db = sqlite3.connect(old, isolation_level=None)
    migrate_sqlite(db, lambda: 0.0, target=start)
    assert sqlite_version(db) == start
    db.close()

    store = await SqliteStore.open(str(old))
    run, _ = await store.create_run(new_run(), [])
    assert (await store.get_run(run.id)).id == run.id
    await store.close()
    assert schema_of(old) == schema_of(fresh)


async def test_reopening_keeps_data_and_applies_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    store = await SqliteStore.open(path)
    run, _ = await store.create_run(new_run(), [])
    await store.close()
    store = await SqliteStore.open(path)
    assert (await store.get_run(run.id)).workflow_name == "CI"
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (LATEST,)
    db.close()


async def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    await (await SqliteStore.open(str(path))).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_version VALUES (?, 'future', 0)", (LATEST + 1,))
    db.close()
    with pytest.raises(StoreError, match="newer than this Conveyor supports"):
        await SqliteStore.open(str(path))


async def test_a_failed_migration_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (unrelated TEXT)")  # collides with version 1
    db.close()
    with pytest.raises(StoreError, match="cannot migrate"):
        await SqliteStore.open(str(path))
    assert {name for _, name, _ in schema_of(path)} == {"jobs"}


async def test_an_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open SQLite database"):
        await SqliteStore.open(str(tmp_path / "missing" / "c.db"))


async def test_ids_come_from_the_injected_source(tmp_path: Path) -> None:
    ids = iter(f"id-{n}" for n in range(10))
    store = await SqliteStore.open(":memory:", new_id=lambda: next(ids), durable=False)
    run, _ = await store.create_run(new_run(), [])
    assert run.id == "id-0"
    await store.close()


async def test_a_closed_store_raises_store_errors() -> None:
    store = await SqliteStore.open(":memory:")
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get_run("any")

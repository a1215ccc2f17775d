"""open_store: a database URL (or none) picks and opens the backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.store.conftest import POSTGRES_URL, Clock, Place, new_run

from conveyor.errors import StoreError
from conveyor.store import open_store
from conveyor.store.postgres import PostgresStore
from conveyor.store.sqlite import SqliteStore


@pytest.mark.parametrize("url", [None, ""])
async def test_no_url_is_a_sqlite_file_in_the_data_directory(tmp_path: Path, url: Any) -> None:
    data = tmp_path / "data" / "nested"
    store = await open_store(url, data_dir=str(data))
    assert isinstance(store, SqliteStore)
    await store.create_run(new_run(), [])
    await store.close()
    assert (data / "conveyor.db").is_file()


async def test_sqlite_urls_name_relative_absolute_and_memory_databases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url, made in [
        ("sqlite:///rel.db", tmp_path / "rel.db"),
        (f"sqlite:///{tmp_path / 'abs.db'}", tmp_path / "abs.db"),
        ("sqlite:///:memory:", None),
    ]:
        store = await open_store(url, data_dir="unused")
        assert isinstance(store, SqliteStore)
        await store.close()
        assert made is None or made.is_file()
    assert not (tmp_path / "unused").exists()


async def test_the_injected_clock_and_ids_reach_the_store(tmp_path: Path, clock: Clock) -> None:
    ids = iter(f"id-{n}" for n in range(5))
    store = await open_store(None, data_dir=str(tmp_path), clock=clock, new_id=lambda: next(ids))
    run, _ = await store.create_run(new_run(), [])
    assert (run.id, run.created_at) == ("id-0", clock.now)
    await store.close()


async def test_a_postgresql_url_with_a_schema(place_of: Any, clock: Clock) -> None:
    place: Place = place_of("postgres")
    separator = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{separator}connect_timeout=5&schema={place.schema}"
    store = await open_store(url, data_dir="unused", clock=clock)
    assert isinstance(store, PostgresStore)
    run, _ = await store.create_run(new_run(), [])
    await store.close()
    again = await place.open(clock)  # the same schema, opened directly
    assert (await again.get_run(run.id)).created_at == clock.now
    await again.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/db", "unsupported database URL"),
        ("conveyor.db", "unsupported database URL"),
        ("sqlite://", "names a file"),
        ("sqlite:///", "names a file"),
        ("postgresql://localhost/db?schema=a&schema=b", "one non-empty schema"),
        ("postgresql://localhost/db?schema=", "one non-empty schema"),
    ],
)
async def test_bad_urls_are_store_errors(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        await open_store(url, data_dir="unused")

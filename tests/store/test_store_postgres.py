"""What only PostgreSQL has: schemas, migrations there, its pool, commit order, NUL in keys."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from tests.store.conftest import POSTGRES_URL, Clock, Place, new_run

from conveyor.engine.records import JobInstance, NewJob, RunRecord
from conveyor.errors import StoreError
from conveyor.store.postgres import PostgresStore
from conveyor.store.postgres_base import connect
from conveyor.store.postgres_schema import migrate_postgres, postgres_version
from conveyor.store.schema import LATEST


@pytest.fixture
def pg(place_of: Any) -> Place:
    place: Place = place_of("postgres")
    return place


@pytest.fixture
def raw(pg: Place) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A plain connection into the test's schema, outside any store."""
    with psycopg.connect(POSTGRES_URL) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg.schema or "")))
        conn.commit()
        yield conn


def describe(schema: str) -> set[tuple[str, ...]]:
    """Columns, indexes and constraints of `schema`, with its name taken out."""
    with psycopg.connect(POSTGRES_URL) as conn:
        found: set[tuple[str, ...]] = set()
        for query in (
            "SELECT table_name, column_name, data_type, is_nullable, "
            "coalesce(column_default, ''), is_identity FROM information_schema.columns "
            "WHERE table_schema = %s",
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s",
            "SELECT conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %s",
        ):
            for row in conn.execute(query, (schema,)):  # type: ignore[arg-type]
                found.add(tuple(str(value).replace(schema, "<schema>") for value in row))
    return found


async def test_a_store_lives_in_its_own_schema(pg: Place, place_of: Any, clock: Clock) -> None:
    mine = await pg.open(clock)
    other_place: Place = place_of("postgres")
    other = await other_place.open(clock)
    run, _ = await mine.create_run(new_run(), [])
    assert await other.list_runs("default") == []
    assert [r.id for r in await mine.list_runs("default")] == [run.id]
    await other.close()
    await mine.close()


async def test_the_queue_and_lease_indexes_are_partial(
    pg: Place, raw: psycopg.Connection[tuple[Any, ...]], clock: Clock
) -> None:
    await (await pg.open(clock)).close()
    found = raw.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", (pg.schema,)
    ).fetchall()
    partial = {name: definition for name, definition in found if " WHERE " in definition}
    assert set(partial) == {"jobs_queue", "jobs_lease", "workflow_runs_group"}
    assert partial["jobs_queue"].endswith("(queued_at, seq) WHERE (status = 'queued'::text)")


@pytest.mark.parametrize("start", range(LATEST))
async def test_migrates_from_every_earlier_version(
    pg: Place, place_of: Any, clock: Clock, start: int
) -> None:
    fresh: Place = place_of("postgres")
    await (await fresh.open(clock)).close()
    conn = await connect(POSTGRES_URL, pg.schema)
    assert await migrate_postgres(conn, clock, pg.schema, target=start) == 0
    assert await postgres_version(conn) == start
    await conn.close()

    store = await pg.open(clock)
    run, _ = await store.create_run(new_run(), [])
    assert (await store.get_run(run.id)).id == run.id
    await store.close()
    assert describe(pg.schema or "") == describe(fresh.schema or "")


async def test_run_numbers_go_on_from_the_runs_made_before_the_counters(
    pg: Place, raw: psycopg.Connection[tuple[Any, ...]], clock: Clock
) -> None:
    conn = await connect(POSTGRES_URL, pg.schema)
    await migrate_postgres(conn, clock, pg.schema, target=4)
    await conn.close()
    raw.execute(
        "INSERT INTO workflow_runs (id, tenant_id, workflow_path, workflow_name, event, "
        "payload, inputs, status, attempt, run_number, created_at, repository_id) VALUES "
        "('old', 'default', 'ci.yml', 'CI', 'push', '{}', '{}', 'completed', 1, 7, 0, NULL)"
    )
    raw.commit()
    store = await pg.open(clock)
    numbers = [
        (await store.create_run(new_run(workflow_path=path), []))[0].run_number
        for path in ("ci.yml", "ci.yml", "other.yml")
    ]
    assert numbers == [8, 9, 1]
    await store.close()


async def test_a_number_taken_without_the_counter_is_not_given_again(
    pg: Place, raw: psycopg.Connection[tuple[Any, ...]], clock: Clock
) -> None:
    """As a server from before the counters numbers runs, during an upgrade."""
    store = await pg.open(clock)
    assert (await store.create_run(new_run(), []))[0].run_number == 1
    raw.execute(
        "INSERT INTO workflow_runs (id, tenant_id, workflow_path, workflow_name, event, "
        "payload, inputs, status, attempt, run_number, created_at, repository_id) VALUES "
        "('by-old', 'default', %s, 'CI', 'push', '{}', '{}', 'queued', 1, 2, 0, NULL)",
        (new_run().workflow_path,),
    )
    raw.commit()
    assert (await store.create_run(new_run(), []))[0].run_number == 3
    await store.close()


async def test_a_creation_whose_key_is_taken_draws_no_number(pg: Place, clock: Clock) -> None:
    store = await pg.open(clock)
    first, _ = await store.create_run(new_run(idempotency_key="k"), [])
    again, _ = await store.create_run(new_run(idempotency_key="k"), [])
    assert again.id == first.id
    later, _ = await store.create_run(new_run(), [])
    assert (first.run_number, later.run_number) == (1, 2)
    await store.close()


async def test_reopening_applies_nothing_and_a_newer_schema_is_refused(
    pg: Place, raw: psycopg.Connection[tuple[Any, ...]], clock: Clock
) -> None:
    store = await pg.open(clock)
    run, _ = await store.create_run(new_run(), [])
    await store.close()
    store = await pg.open(clock)
    assert (await store.get_run(run.id)).workflow_name == "CI"
    await store.close()
    assert raw.execute("SELECT count(*) FROM schema_version").fetchone() == (LATEST,)
    raw.execute("INSERT INTO schema_version VALUES (%s, 'future', 0)", (LATEST + 1,))
    raw.commit()
    with pytest.raises(StoreError, match="newer than this Conveyor supports"):
        await pg.open(clock)


async def test_a_failed_migration_changes_nothing(
    pg: Place, raw: psycopg.Connection[tuple[Any, ...]], clock: Clock
) -> None:
    raw.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg.schema or "")))
    raw.execute("CREATE TABLE jobs (unrelated TEXT)")  # collides with version 1
    raw.commit()
    with pytest.raises(StoreError, match="cannot migrate"):
        await pg.open(clock)
    tables = raw.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (pg.schema,)
    ).fetchall()
    assert tables == [("jobs",)]


async def test_an_unreachable_server_and_a_closed_store_are_store_errors(
    pg: Place, clock: Clock
) -> None:
    with pytest.raises(StoreError, match="cannot open PostgreSQL database"):
        await PostgresStore.open("postgresql://postgres@127.0.0.1:1/test", schema=pg.schema)
    store = await pg.open(clock)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get_run("any")
    with pytest.raises(StoreError, match="closed"):
        await store.wait_for_event(1)


async def test_listening_resumes_after_its_connection_dies(
    pg: Place, raw: psycopg.Connection[tuple[Any, ...]], clock: Clock
) -> None:
    listener, writer = await pg.open(clock), await pg.open(clock)
    assert isinstance(listener, PostgresStore) and listener._listening is not None
    raw.execute("SELECT pg_terminate_backend(%s)", (listener._listening.info.backend_pid,))
    raw.commit()
    await asyncio.sleep(0.2)
    await listener.events_after(0)
    await asyncio.wait_for(listener.wait_for_event(30), 5)  # may have missed something: looks
    waiter = asyncio.create_task(listener.wait_for_event(30))
    await asyncio.sleep(0.1)
    await writer.create_run(new_run(), [])
    await asyncio.wait_for(waiter, 5)
    await writer.close()
    await listener.close()


async def test_a_consumer_never_skips_an_event_committed_out_of_order(
    pg: Place, raw: psycopg.Connection[tuple[Any, ...]], clock: Clock
) -> None:
    store = await pg.open(clock)
    _, (job,) = await store.create_run(new_run(), [NewJob("build", "Build", (), ())])
    cursor = (await store.events_after(0))[-1].id
    raw.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job.id,))  # hold the row
    first = asyncio.create_task(store.cancel_job(job.id, "stop"))  # starts, then waits
    await asyncio.sleep(0.2)
    assert not first.done()
    second, _ = await store.create_run(new_run(), [])  # starts later, commits first
    early = await store.events_after(cursor)
    assert [(e.kind, e.run_id) for e in early] == [("run.created", second.id)]
    cursor = early[-1].id
    raw.rollback()  # the first transaction goes on and commits last
    await first
    late = await store.events_after(cursor)
    assert [(e.kind, e.job_id) for e in late] == [("job.completed", job.id)]
    await store.close()


async def test_one_store_serves_concurrent_acquirers_from_its_pool(pg: Place, clock: Clock) -> None:
    store = await PostgresStore.open(POSTGRES_URL, schema=pg.schema, clock=clock, pool_size=6)
    _, jobs = await store.create_run(new_run(), [NewJob(f"j{n}", "J", (), ()) for n in range(50)])
    for job in jobs:
        await store.queue_job(job.id, [JobInstance("J", None)])

    async def acquire_all(n: int) -> list[str]:
        got = []
        while (job := await store.acquire_job(f"r{n}", [], 60)) is not None:
            got.append(job.id)
        return got

    results = await asyncio.gather(*(acquire_all(n) for n in range(12)))
    assert sorted(j for got in results for j in got) == sorted(job.id for job in jobs)
    assert sum(1 for got in results if got) > 1  # they did run side by side
    await store.close()


async def test_nul_in_a_key_is_kept_as_u_fffd_and_found_again(pg: Place, clock: Clock) -> None:
    store = await pg.open(clock)
    await store.create_tenant("t\x00", "T")
    run, _ = await store.create_run(new_run(tenant_id="t\x00", idempotency_key="k\x00"), [])
    assert (run.tenant_id, run.idempotency_key) == ("t\ufffd", "k\ufffd")
    again, _ = await store.create_run(new_run(tenant_id="t\x00", idempotency_key="k\x00"), [])
    assert again.id == run.id
    assert (await store.get_run(run.id, tenant_id="t\x00")).id == run.id
    await store.close()


async def test_store_transactions_are_counted(pg: Place, clock: Clock) -> None:
    store = await pg.open(clock)
    assert isinstance(store, PostgresStore)
    seen: list[int] = []

    def queue_now(run: RunRecord) -> None:
        seen.append(run.run_number)

    late, _ = await store.create_run(
        new_run(), [NewJob("b", "B", (), ())], queue_now=queue_now, queue_now_reads_number=False
    )
    assert store.transactions == 1  # the number drawn by the creating statement itself
    assert (late.run_number, seen) == (1, [0])  # what queue_now promised not to read
    _, (job,) = await store.create_run(new_run(), [NewJob("b", "B", (), ())])
    assert store.transactions == 3  # the run's number, then the run with its jobs
    await store.get_job(job.id)  # reads are not write transactions
    await store.queue_job(job.id, [JobInstance("B", None)])
    assert store.transactions == 4
    await store.close()

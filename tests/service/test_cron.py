"""Cron: however many servers share the database, each tick starts one run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from conveyor.engine.runs import RunService, RunSettings
from conveyor.engine.sources import RepositoryMirror, SourceError
from conveyor.service.loops import CronLoop
from conveyor.store import open_store

NIGHTLY = """
on:
  schedule:
    - cron: "*/5 * * * *"
jobs:
  nightly:
    runs-on: ubuntu-latest
    steps:
      - run: echo nightly
"""


SINCE = datetime(2026, 11, 26, 23, 58, 30, tzinfo=UTC).timestamp()
NOW = datetime(2026, 11, 27, 0, 11, 0, tzinfo=UTC).timestamp()
"""23:58:30 → 00:11:00 holds the ticks 00:00, 00:05 and 00:10."""


def _cron(store, data_dir: Path, *, fails: Callable[[], bool] = lambda: False) -> CronLoop:
    """A server's cron loop on `store`, whose starts raise while `fails()` says so."""
    runs = RunService(store, RepositoryMirror(str(data_dir / "repos")), RunSettings())

    async def start(tenant, workflow, cron, key):
        if fails():
            raise SourceError("git fetch: the remote hung up")
        payload = {"schedule": cron}
        return await runs.start_run(tenant, workflow, "schedule", payload, {}, idempotency_key=key)

    async def tenants() -> list[str]:
        return ["default"]

    return CronLoop(store, start, tenants=tenants, clock=lambda: SINCE)


async def _two_servers_fire(url: str | None, data_dir: Path) -> tuple[set[str], set[str], int]:
    first = await open_store(url, data_dir=str(data_dir))
    second = await open_store(url, data_dir=str(data_dir))
    try:
        await first.register_workflow("default", "nightly.yml", NIGHTLY, "nightly")
        loops = [_cron(store, data_dir) for store in (first, second)]
        one, two = await asyncio.gather(*(loop.fire(NOW) for loop in loops))
        return one, two, len(await first.list_runs("default"))
    finally:
        await first.close()
        await second.close()


def test_each_cron_tick_fires_once_across_two_servers(tmp_path: Path, database_url) -> None:
    one, two, total = asyncio.run(_two_servers_fire(database_url, tmp_path / "data"))
    assert len(one) == len(two) == 3  # each server started, or found, every tick's run
    assert one == two
    assert total == 3


async def _one_server_fails(url: str | None, data_dir: Path) -> tuple[int, int, int, int]:
    failing = await open_store(url, data_dir=str(data_dir))
    healthy = await open_store(url, data_dir=str(data_dir))
    try:
        await failing.register_workflow("default", "nightly.yml", NIGHTLY, "nightly")
        await failing.register_workflow("default", "other.yml", NIGHTLY, "other")
        down = True
        broken = _cron(failing, data_dir, fails=lambda: down)
        assert await broken.fire(NOW) == set()
        alone = len(await failing.list_runs("default"))
        # The other server fires the same ticks: none was claimed and then lost.
        fired = len(await _cron(healthy, data_dir).fire(NOW))
        # The failed server tries its failed ticks again at its next minute, and finds
        # them started; a tick older than RETRY_FOR is no longer tried.
        down = False
        again = len(await broken.fire(NOW + 60))
        return alone, fired, again, len(await failing.list_runs("default"))
    finally:
        await failing.close()
        await healthy.close()


def test_a_tick_whose_start_fails_on_one_server_is_started_by_another_and_retried(
    tmp_path: Path, database_url
) -> None:
    alone, fired, again, total = asyncio.run(_one_server_fails(database_url, tmp_path / "d"))
    assert alone == 0
    assert fired == 6  # 3 ticks of each of the two workflows: one failing doesn't stop the rest
    assert again == 4  # 00:05 and 00:10 of both; 00:00 was 11 minutes old at its failure
    assert total == 6


async def _start_from_an_older_read(url: str | None, data_dir: Path) -> str | None:
    store = await open_store(url, data_dir=str(data_dir))
    try:
        record = await store.register_workflow("default", "nightly.yml", NIGHTLY, "nightly")
        await asyncio.sleep(0.01)  # a push registers it again meanwhile (a newer updated_at)
        await store.register_workflow("default", "nightly.yml", NIGHTLY, "nightly")
        runs = RunService(store, RepositoryMirror(str(data_dir / "repos")), RunSettings())
        run = await runs.start_run("default", record, "schedule", {"schedule": "x"}, {})
        return run.workflow_id
    finally:
        await store.close()


def test_a_tick_fires_though_its_workflow_was_registered_again_since_it_was_read(
    tmp_path: Path, database_url
) -> None:
    """Only dispatch, which keeps records between requests, asks for the workflow as read."""
    assert asyncio.run(_start_from_an_older_read(database_url, tmp_path / "data")) is not None

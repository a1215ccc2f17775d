"""Cron: however many servers share the database, each tick starts one run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from conveyor.engine.runs import RunService, RunSettings
from conveyor.engine.sources import RepositoryMirror
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


async def _two_servers_fire(url: str | None, data_dir: Path) -> tuple[int, int, int]:
    first = await open_store(url, data_dir=str(data_dir))
    second = await open_store(url, data_dir=str(data_dir))
    try:
        await first.register_workflow("default", "nightly.yml", NIGHTLY, "nightly")
        loops = []
        for store in (first, second):
            runs = RunService(store, RepositoryMirror(str(data_dir / "repos")), RunSettings())

            async def start(tenant, workflow, cron, runs=runs):
                return await runs.start_run(tenant, workflow, "schedule", {"schedule": cron}, {})

            async def tenants() -> list[str]:
                return ["default"]

            since = datetime(2026, 11, 26, 23, 58, 30, tzinfo=UTC).timestamp()
            loops.append(CronLoop(store, start, tenants=tenants, clock=lambda since=since: since))
        # 23:58:30 → 00:11:00 holds the ticks 00:00, 00:05 and 00:10.
        now = datetime(2026, 11, 27, 0, 11, 0, tzinfo=UTC).timestamp()
        started = await asyncio.gather(*(loop.fire(now) for loop in loops))
        runs_after = await first.list_runs("default")
        return started[0], started[1], len(runs_after)
    finally:
        await first.close()
        await second.close()


def test_each_cron_tick_fires_once_across_two_servers(tmp_path: Path, database_url) -> None:
    one, two, total = asyncio.run(_two_servers_fire(database_url, tmp_path / "data"))
    assert one + two == 3
    assert total == 3


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

"""An embedded runner: `conveyor serve --runner` also pulls and runs jobs itself.

It is an ordinary runner agent that talks to its own server over HTTP, so
the one-process setup exercises exactly the protocol remote runners use.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

from conveyor.service.serve import ServeOptions


def embedded_runner(options: ServeOptions) -> Callable[[str, asyncio.Event], Awaitable[None]]:
    """A `ready` callback for `serve` that starts the runner once the server listens, and
    stops its taking work when the server begins to stop."""

    async def start(url: str, stopping: asyncio.Event) -> None:
        from conveyor.runner.agent import run_agent

        with open(os.path.join(options.data_dir, "runner-token"), encoding="utf-8") as f:
            token = f.read().strip()
        workdir = os.path.join(options.data_dir, "embedded-runner")
        # `stop` keeps the agent from installing signal handlers: uvicorn owns them here.
        # The agent takes no more work once the server begins to stop, and cancelling
        # this task (when the server has stopped) ends it.
        await run_agent(
            url,
            token,
            [],
            workdir=workdir,
            concurrency=os.cpu_count() or 2,
            name="embedded",
            stop=stopping,
        )

    return start

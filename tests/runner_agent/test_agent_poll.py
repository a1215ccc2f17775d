"""The agent's polls: one whose answer was lost is asked again under its name."""

from __future__ import annotations

import asyncio

from conveyor.runner.agent import _Agent
from tests.runner_agent.protocol_server import ProtocolServer


def agent() -> _Agent:
    return _Agent(
        "http://unused",
        "token",
        [],
        workdir="unused",
        concurrency=1,
        name="r",
        grace=1.0,
        stop=asyncio.Event(),
        poll_wait=0.0,
    )


def test_a_poll_whose_answer_was_lost_goes_again_under_its_name() -> None:
    server = ProtocolServer(dropped=2)

    async def main() -> None:
        runner, channel = agent(), server.channel()
        try:
            assert await asyncio.wait_for(runner._poll(channel), 10) is None
            assert await runner._poll(channel) is None
        finally:
            await server.close()

    asyncio.run(main())
    polls = [c.body for c in server.calls if c.path == "/runners/poll"]
    assert len(polls) == 4
    name = polls[0]["request"]
    assert [(p["request"], p["again"]) for p in polls[:3]] == [
        (name, False),
        (name, True),  # the server hands again what the lost answer handed, if anything
        (name, True),
    ]
    assert polls[3]["request"] != name and polls[3]["again"] is False  # answered: a new one

"""uvicorn's server, telling the application as soon as it begins to stop.

uvicorn waits for the requests in flight before it stops, up to a limit, then
cancels them with an error in the log. Runners' long polls would hold every
stop for that long; told first, they answer at once (no job) instead.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_stop()
        await super().shutdown(sockets)

"""The event loop of the commands that start processes: child exits noticed through pidfds.

Steps wait for their processes themselves (see process.py); the processes
asyncio starts (git for the server's repository mirrors, the runner's lease
guard) are waited for by a child watcher. Python 3.11's default one starts a
thread for every child; waiting on a pidfd in the loop took 0.34 ms of the
parent's CPU per process here, against 0.4 to 0.55 ms. Python 3.12 picks
the pidfd watcher by itself where the kernel has pidfds (Linux 5.3+).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, on 3.11 with a pidfd child watcher where pidfds work.

    The watcher serves only the loop it is attached to: while `main` runs, no
    other thread's loop may start child processes.
    """
    # asyncio.run attaches a child watcher to loops of the main thread only.
    if (
        sys.version_info >= (3, 12)
        or threading.current_thread() is not threading.main_thread()
        or not _pidfds_work()
    ):
        return asyncio.run(main)
    default = asyncio.get_child_watcher()
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())  # asyncio.run attaches it
    try:
        return asyncio.run(main)
    finally:
        asyncio.set_child_watcher(default)  # for loops started later, in any thread


def _pidfds_work() -> bool:
    """Whether the kernel gives out pidfds (a seccomp policy may refuse them)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True

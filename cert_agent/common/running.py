"""Running a service until the user or the system stops it (Ctrl-C, SIGTERM)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable


async def until_stopped(ready: Callable[[], None] = lambda: None) -> None:
    """Call ``ready`` once the signal handlers are in place (so that a signal sent as soon as
    the service says it is ready stops it cleanly), then return when SIGINT or SIGTERM arrives
    (on Windows, where the loop takes no signal handlers, Ctrl-C ends ``asyncio.run``)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    ready()
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)

"""Running a command or a service: the extra it needs, and running until stopped (Ctrl-C, SIGTERM)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import signal
import sys
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


def require_extra(extra: str, *modules: str) -> None:
    """Exit with a clear message (code 2) when the install lacks the ``extra`` a command needs:
    both commands are installed by either extra, each works with its own."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"缺少依赖 (missing): {', '.join(missing)}. Install it with: pip install 'cert-agent[{extra}]'",
            file=sys.stderr,
        )
        raise SystemExit(2)

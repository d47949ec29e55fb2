"""Run one asyncio entry point until it finishes, SIGINT/SIGTERM arrive, or `duration` runs out."""

from __future__ import annotations

import asyncio
import signal
from typing import Any, Awaitable, Callable


async def run_until_stopped(main: Callable[[], Awaitable[Any]], duration: float | None = None) -> Any:
    """Cancel `main()` on SIGINT/SIGTERM or after `duration` s; returns its result (None if stopped)."""
    task = asyncio.ensure_future(main())
    loop = asyncio.get_running_loop()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        done, _ = await asyncio.wait({task}, timeout=duration)
        if not done:
            stop()
        try:
            return await task
        except asyncio.CancelledError:
            if stopped:
                return None
            raise
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

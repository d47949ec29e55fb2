"""Run one asyncio entry point until it finishes, SIGINT/SIGTERM arrive, or `duration` runs out; and
the wind-down every component shares."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any


async def run_until_stopped(
    main: Callable[[], Awaitable[Any]],
    duration: float | None = None,
    *,
    on_stop: Callable[[], None] | None = None,
    signals: dict[signal.Signals, Callable[[], None]] | None = None,
) -> Any:
    """Run `main()` until it returns; SIGINT / SIGTERM or `duration` s stop it. Returns its result (None
    when stopped). The one signal path of every process: nodes, skills, the launcher, the CLI commands.

    Stopping cancels `main()` (its clean-up runs), or calls `on_stop()` when given (a graceful stop that
    `main` finishes itself: the launcher stops its children in order). `signals` adds handlers (SIGUSR1
    pauses a replay)."""
    task = asyncio.ensure_future(main())
    loop = asyncio.get_running_loop()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        if on_stop is not None:
            on_stop()
        else:
            task.cancel()

    handlers = {signal.SIGTERM: stop, signal.SIGINT: stop, **(signals or {})}
    for sig, handler in handlers.items():
        loop.add_signal_handler(sig, handler)
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
        for sig in handlers:
            loop.remove_signal_handler(sig)


async def wait_first(tasks: list[asyncio.Task], timeout: float | None = None) -> None:
    """Wait until one task ends (or `timeout` s pass) and re-raise the first failure among those done."""
    done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()


async def wind_down(
    tasks: list[asyncio.Task], teardown: Callable[[], Awaitable[Any]], *, log: Any, teardown_timeout_s: float = 5.0
) -> None:
    """Cancel `tasks` (waiting up to 1 s), then run `teardown()` with a timeout; a failing teardown is logged,
    never raised, so that the caller's remaining clean-up (closing sockets) still happens."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=1.0)
    try:
        await asyncio.wait_for(teardown(), timeout=teardown_timeout_s)
    except Exception as exc:
        log.warning("teardown failed", error=f"{type(exc).__name__}: {exc}")

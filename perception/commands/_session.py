"""Shared bits of the recording commands: config loading, the session metadata, signal-driven shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from typing import Any, Awaitable, Callable

from perception.config import REPO_ROOT, AppConfig


def git_revision() -> str:
    """`git describe`-style revision of the running code, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def session_metadata(config: AppConfig) -> dict[str, Any]:
    """What a recording should say about the session that made it (MCAP "session" metadata record)."""
    model = config.model
    return {
        "config": config.model_dump(mode="json"),
        "config_name": config.name,
        "model_id": model.checkpoint or f"preset:{model.preset}",
        "git_revision": git_revision(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "argv": sys.argv,
    }


async def run_until_signal(job: Callable[[], Awaitable[Any]], on_usr1: Callable[[], None] | None = None) -> Any:
    """Run `job()`; SIGTERM / SIGINT cancel it (its cleanup runs), SIGUSR1 calls `on_usr1`."""
    task = asyncio.ensure_future(job())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    if on_usr1 is not None:
        loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    try:
        return await task
    except asyncio.CancelledError:
        if task.cancelled():
            return None
        raise

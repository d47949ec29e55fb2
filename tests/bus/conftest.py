"""Fixtures: every test gets its own runtime dir (short, for ipc:// path limits) and its own proxy."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bus.config import BusConfig
from bus.proxy import Proxy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def runtime_dir():
    path = Path(tempfile.mkdtemp(prefix="bus-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def bus_config(runtime_dir: Path) -> BusConfig:
    return BusConfig.local(runtime_dir, stats_interval_s=0.2, ready_timeout_s=10.0)


@pytest.fixture
async def proxy(bus_config: BusConfig):
    """An in-process proxy (its forwarding runs in libzmq on a thread)."""
    p = Proxy(bus_config)
    task = asyncio.create_task(p.run())
    waiter = asyncio.create_task(p.bound.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    yield p
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PERCEPTION_LOG_LEVEL"] = env.get("PERCEPTION_LOG_LEVEL", "WARNING")
    return env


def spawn(*args: str, **kw) -> subprocess.Popen:
    """A real child process running `python -m ...` with this repo on the path."""
    return subprocess.Popen(
        [sys.executable, *args], cwd=REPO, env=child_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, **kw,
    )


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> tuple[str, str]:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()

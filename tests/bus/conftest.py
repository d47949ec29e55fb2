"""Fixtures: every test gets its own runtime dir (tests/conftest.py) and its own proxy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bus.config import BusConfig
from bus.proxy import proxy_in_background
from tests.support import REPO, child_env


@pytest.fixture
def bus_config(runtime_dir: Path) -> BusConfig:
    return BusConfig.local(runtime_dir, stats_interval_s=0.2, ready_timeout_s=10.0)


@pytest.fixture
async def proxy(bus_config):
    """An in-process proxy (its forwarding runs in libzmq on a thread)."""
    async with proxy_in_background(bus_config) as p:
        yield p


def spawn(*args: str, **kw) -> subprocess.Popen:
    """A real child process running `python -m ...` with this repo on the path."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> tuple[str, str]:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()

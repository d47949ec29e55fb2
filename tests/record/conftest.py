"""Fixtures for record/replay tests: a private runtime dir, an in-process proxy, a YAML config for CLI
children, and helpers to run `perception ...` as a real subprocess."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.bus.messages import Blob, Text
from bus.codec import encode
from bus.config import BusConfig
from bus.mcapfile import BusMcapWriter, pack_message
from bus.proxy import proxy_in_background
from tests.support import perception_child, wait_line  # noqa: F401  (re-exported for the tests)


@pytest.fixture
def bus_config(runtime_dir: Path) -> BusConfig:
    return BusConfig.local(runtime_dir, stats_interval_s=0.2, ready_timeout_s=10.0)


@pytest.fixture
def config_file(runtime_dir: Path) -> Path:
    path = runtime_dir / "config.yaml"
    path.write_text(f"name: test\nbus:\n  runtime_dir: {runtime_dir}\n  stats_interval_s: 0.2\n  ready_timeout_s: 10\n")
    return path


@pytest.fixture
async def proxy(bus_config):
    """An in-process proxy (its forwarding runs in libzmq on a thread)."""
    async with proxy_in_background(bus_config) as p:
        yield p


async def perception(*args: str) -> asyncio.subprocess.Process:
    """`perception ARGS` as a child process with piped stdin/stdout/stderr."""
    return await perception_child(*args, stdin=True)


async def perception_run(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await perception(*args)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


def sample_blob(i: int) -> Blob:
    """Deterministic arrays of varied dtypes and sizes (above msgpack's bin8/bin16 limits too)."""
    rng = np.random.default_rng(i)
    if i % 3 == 0:
        data = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)  # 9216 B: bin16
    elif i % 3 == 1:
        data = rng.standard_normal(300).astype(np.float32)  # 1200 B: bin16
    else:
        data = rng.integers(0, 255, size=(160, 140, 3), dtype=np.uint8)  # 67200 B: bin32
    return Blob(label=f"b{i}", data=data)


def write_synthetic(
    path: Path, n: int = 20, interval_ms: int = 50, topics=("demo/a", "other/b")
) -> list[tuple[str, int]]:
    """A recording written directly (no bus): n messages per topic `interval_ms` apart. Returns (topic, seq)."""
    writer = BusMcapWriter(path)
    writer.metadata("session", {"test": True})
    t0 = time.time_ns()
    sent = []
    for i in range(n):
        for topic in topics:
            msg = sample_blob(i) if topic.startswith("demo/") else Text(text=f"t{i}")
            parts = encode(topic, msg, seq=i, src="synthetic", t_ns=t0 + i * interval_ms * 10**6)
            writer.write(
                topic,
                msg.TYPE,
                msg.VERSION,
                seq=i,
                t_pub=t0 + i * interval_ms * 10**6,
                t_log=t0 + i * interval_ms * 10**6 + 1000,
                data=pack_message(parts[1], parts[2:]),
            )
            sent.append((topic, i))
    writer.close()
    return sent

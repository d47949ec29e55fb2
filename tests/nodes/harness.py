"""Run one node in-process on a private bus (real proxy, real sockets), feed it inputs, read its outputs."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from bus.proxy import Proxy
from bus.pubsub import Publisher, Subscriber
from perception.config import AppConfig

from .conftest import pipeline_config


def node_config(runtime_dir: Path, checkpoint: Path, **pipeline) -> AppConfig:
    return AppConfig.model_validate(pipeline_config(runtime_dir, checkpoint, **pipeline))


@contextlib.asynccontextmanager
async def running(node_cls, config: AppConfig, outputs: list[str]):
    """Proxy + node + (publisher for inputs, subscriber on `outputs`); yields (node, pub, sub)."""
    proxy = Proxy(config.bus)
    proxy_task = asyncio.create_task(proxy.run())
    await asyncio.wait_for(proxy.bound.wait(), 30)
    sub = await Subscriber(config.bus, outputs, name="test").start()
    pub = Publisher(config.bus, src="test-input")
    await pub.ready()
    node = node_cls(config)
    task = asyncio.create_task(node.run())
    try:
        deadline = asyncio.get_running_loop().time() + 120
        while not node.ready:  # model load happens in setup
            if task.done():
                task.result()
            assert asyncio.get_running_loop().time() < deadline, "node did not become ready"
            await asyncio.sleep(0.05)
        yield node, pub, sub
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        pub.close()
        sub.close()
        proxy_task.cancel()
        await asyncio.gather(proxy_task, return_exceptions=True)


async def collect(sub: Subscriber, prefix: str, n: int, timeout: float) -> list:
    """The next `n` messages whose topic starts with `prefix` (others are skipped)."""
    out = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            env = await sub.recv()
            if env.topic.startswith(prefix):
                out.append(env)
    return out

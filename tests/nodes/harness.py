"""Run one node in-process on a private bus (real proxy, real sockets), feed it inputs, read its outputs.

The events and world nodes hold no model: they get text embeddings from the encoder's `embed`.
`embed_server` serves that method on the encoder's endpoint without the rest of the encoder node: a real
RpcServer running the encoder's own param check and reply (perception/nodes/text_embeddings.py) on the
session's small model.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import numpy as np

from bus.proxy import Proxy
from bus.pubsub import Publisher, Subscriber
from bus.rpc import RpcServer
from bus.security import EndpointInUseError, refuse_live_ipc
from perception.config import AppConfig
from perception.nodes.text_embeddings import embed_result, embed_texts_param
from perception.nodes.workers import encoder_endpoint

from .conftest import pipeline_config


def node_config(runtime_dir: Path, checkpoint: Path, **pipeline) -> AppConfig:
    return AppConfig.model_validate(pipeline_config(runtime_dir, checkpoint, **pipeline))


@contextlib.asynccontextmanager
async def bus_up(config: AppConfig, outputs: list[str]):
    """Proxy + (publisher for inputs, subscriber on `outputs`); yields (pub, sub). Nodes come and go on it
    with `started`."""
    proxy = Proxy(config.bus)
    proxy_task = asyncio.create_task(proxy.run())
    await asyncio.wait_for(proxy.bound.wait(), 30)
    sub = await Subscriber(config.bus, outputs, name="test").start()
    pub = Publisher(config.bus, src="test-input")
    await pub.ready()
    try:
        yield pub, sub
    finally:
        pub.close()
        sub.close()
        proxy_task.cancel()
        await asyncio.gather(proxy_task, return_exceptions=True)


@contextlib.asynccontextmanager
async def started(node_cls, config: AppConfig):
    """One node on a bus that is up, once it is ready; stopped (teardown and all) when the block ends."""
    node = node_cls(config)
    task = asyncio.create_task(node.run())
    try:
        deadline = asyncio.get_running_loop().time() + 120
        while not node.ready.is_set():  # model load happens in setup
            if task.done():
                task.result()
            assert asyncio.get_running_loop().time() < deadline, "node did not become ready"
            await asyncio.sleep(0.05)
        yield node
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def running(node_cls, config: AppConfig, outputs: list[str]):
    """Proxy + node + (publisher for inputs, subscriber on `outputs`); yields (node, pub, sub)."""
    async with bus_up(config, outputs) as (pub, sub), started(node_cls, config) as node:
        yield node, pub, sub


async def collect(sub: Subscriber, prefix: str, n: int, timeout: float) -> list:
    """The next `n` messages whose topic starts with `prefix` (others are skipped)."""
    out = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            env = await sub.recv()
            if env.topic.startswith(prefix):
                out.append(env)
    return out


def embed(model, texts: list[str]) -> np.ndarray:
    """Unit text embeddings [L, D] from `model`, as the encoder's `embed` computes them."""
    return np.asarray(embed_result(model, list(texts), "test")["embeddings"], dtype=np.float32)


@contextlib.asynccontextmanager
async def embed_server(config: AppConfig, model, sizes: list[int] | None = None):
    """The encoder's `embed` method on the encoder's endpoint, backed by `model`, until the block ends;
    `sizes` collects the number of texts of each request served."""

    async def handler(params: dict) -> dict:
        texts = embed_texts_param(params)
        if sizes is not None:
            sizes.append(len(texts))
        return await asyncio.to_thread(embed_result, model, texts, "test")

    server = RpcServer(config.bus, {"embed": handler}, endpoint=encoder_endpoint(config), name="test-encoder")
    server.bind()
    task = asyncio.create_task(server.run())
    try:
        yield server
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        deadline = asyncio.get_running_loop().time() + 5
        while True:  # libzmq closes the listener on its own thread: wait, so the next bind finds it gone
            try:
                refuse_live_ipc(server.endpoint)
                break
            except EndpointInUseError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.02)

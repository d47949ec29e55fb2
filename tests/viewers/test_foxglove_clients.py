"""The Foxglove bridge serves at most `max_clients` WebSocket clients (one more gets HTTP 503 with the
reason, and a place frees when one leaves), and a client that stops reading is bounded: the bytes waiting
for it stay within the gate's buffer while a reading client keeps getting frames. Real WebSocket clients
(the `websockets` package) against a real bridge on a private bus."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from bus.component import run_component
from bus.proxy import proxy_in_background
from bus.pubsub import Publisher
from perception.config import AppConfig
from perception.messages import Frame
from perception.viewers.client_gate import CHUNK
from perception.viewers.foxglove_bridge import FoxgloveBridge

SUBPROTOCOL = "foxglove.sdk.v1"


async def handshake(ws) -> dict[str, int]:
    """Read serverInfo and the advertisements; channel topic -> id."""
    channels: dict[str, int] = {}
    async with asyncio.timeout(10):
        while "/frames/cam0" not in channels:
            msg = await ws.recv()
            if isinstance(msg, str):
                op = json.loads(msg)
                if op["op"] == "advertise":
                    channels.update({ch["topic"]: ch["id"] for ch in op["channels"]})
    return channels


async def subscribe_frames(ws) -> None:
    channels = await handshake(ws)
    await ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 1, "channelId": channels["/frames/cam0"]}]}))


async def test_the_bridge_caps_its_clients_and_bounds_one_that_never_reads(runtime_dir):
    config = AppConfig.model_validate({"bus": {"runtime_dir": str(runtime_dir), "stats_interval_s": 0.5}})
    assert config.pipeline.cameras[0].name == "cam0"
    bridge = FoxgloveBridge(config, port=0, max_fps=0, max_clients=2)
    async with proxy_in_background(config.bus):
        task = asyncio.create_task(run_component(bridge))
        try:
            async with asyncio.timeout(30):
                while not bridge.ready.is_set():
                    assert not task.done(), task.result()
                    await asyncio.sleep(0.05)
            reader = await websockets.connect(bridge.url, subprotocols=[SUBPROTOCOL], max_size=None)
            # stops reading once 1 message waits: the rest stays in the kernel and the gate
            stalled = await websockets.connect(bridge.url, subprotocols=[SUBPROTOCOL], max_size=None, max_queue=1)
            with pytest.raises(InvalidStatus) as refused:
                await websockets.connect(bridge.url, subprotocols=[SUBPROTOCOL], open_timeout=10)
            assert refused.value.response.status_code == 503
            assert b"too many Foxglove clients" in refused.value.response.body
            assert b"at most 2" in refused.value.response.body

            await subscribe_frames(reader)
            await subscribe_frames(stalled)  # and never reads again
            rng = np.random.default_rng(0)
            images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(4)]
            got, engaged = 0, None
            async with Publisher(config.bus, src="test-camera") as pub:
                t0 = time.time_ns()
                for i in range(600):  # random pixels: the largest JPEGs (~230 kB each)
                    frame = Frame(cam="cam0", index=i, t_capture_ns=t0 + i, image=images[i % 4])
                    await pub.publish("frames/cam0", frame)
                    await asyncio.sleep(0.02)
                    if engaged is None and bridge.gate.stats.max_buffered > 0:
                        engaged = i  # the kernel's buffers toward the stalled client are full: the gate holds
                    if engaged is not None and i > engaged + 30:
                        break
                    while True:  # the reading client takes what has come
                        try:
                            msg = await asyncio.wait_for(reader.recv(), 0.001)
                        except TimeoutError:
                            break
                        got += isinstance(msg, bytes) and msg[0] == 0x01
            assert engaged is not None, "the stalled client absorbed every frame: nothing was bounded"
            assert got >= 10  # the reading client kept getting frames beside the stalled one
            stats = bridge.gate.stats
            assert stats.accepted == 2 and stats.refused == 1 and stats.active == 2
            assert stats.max_buffered <= bridge.gate.buffer_bytes + CHUNK  # the stalled client's bytes, bounded

            await reader.close()  # a place frees up
            async with asyncio.timeout(10):
                while bridge.gate.stats.active > 1:
                    await asyncio.sleep(0.05)
            again = await websockets.connect(bridge.url, subprotocols=[SUBPROTOCOL], open_timeout=10)
            assert "/frames/cam0" in await handshake(again)
            await again.close()
            stalled.transport.abort()
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 30)
    assert bridge.gate is None  # teardown stopped it

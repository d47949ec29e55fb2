"""Floods from the subscriber side: nothing a subscriber sends reaches a publisher, so publishers stay flat.

Before the proxy filtered upstream traffic, 200 x 1 MiB sent from a raw XSUB on `bus.sub` parked 400
messages in one Publisher (RSS 61 -> 868 MiB). Sizes here are bounds on behaviour, not timings.
"""

from __future__ import annotations

import asyncio
import os
import subprocess

import numpy as np
import psutil

from benchmarks.bus.messages import Blob
from bus.pubsub import Publisher, Subscriber
from tests.bus.conftest import spawn, stop

MiB = 1024 * 1024


async def _counter(proxy, name: str, at_least: float, timeout_s: float = 10.0) -> float:
    for _ in range(int(timeout_s / 0.1)):
        if proxy.counters.get(name, 0) >= at_least:
            break
        await asyncio.sleep(0.1)
    return proxy.counters.get(name, 0)


FLOOD = """
import os, sys, zmq
ctx = zmq.Context()
def connect():
    raw = ctx.socket(zmq.XSUB)
    raw.setsockopt(zmq.SNDHWM, 0)
    raw.connect(sys.argv[1])
    return raw
big = connect()
payload = os.urandom(1 << 20)
for _ in range(200):  # 1 MiB of user data: a plain zmq_proxy forwards it to every publisher
    big.send(b"\\x02" + payload)
raw = connect()
for _ in range(20_000):
    raw.send(b"\\x02" + os.urandom(100))  # small user data
    raw.send_multipart([b"\\x01x", b"y"])  # a multipart is never a subscription either
for _ in range(20_000):  # distinct random subscriptions
    raw.send(b"\\x01" + os.urandom(64))
print("sent", flush=True)
sys.stdin.read()  # stay connected until the test is done
"""


async def test_upstream_and_subscription_floods_never_reach_a_publisher(bus_config, proxy):
    talker = spawn(
        "-m",
        "benchmarks.bus.demo",
        "talker",
        "--bus-json",
        bus_config.model_dump_json(),
        "--rate",
        "50",
        "--no-frames",
        "--src",
        "flooded",
    )
    flood = None
    try:
        async with Subscriber(bus_config, ["demo/"]) as sub:
            await sub.recv(timeout=20)  # the talker is up and publishing
            rss_before = psutil.Process(talker.pid).memory_info().rss
            flood = spawn("-c", FLOOD, bus_config.endpoint("sub"), stdin=subprocess.PIPE)
            assert (await asyncio.wait_for(asyncio.to_thread(flood.stdout.readline), 60)).strip() == "sent"
            assert await _counter(proxy, "upstream_dropped", 40_000, timeout_s=30) == 40_000
            assert await _counter(proxy, "subscriptions_table_full", 20_000 - 4096, timeout_s=30) >= 20_000 - 4096
            assert proxy.counters["subscriptions_active"] <= bus_config.max_subscriptions
            received_before = sub.stats.received
            await asyncio.sleep(1.0)  # the talker goes on publishing through the flood
            while sub.recv_nowait() is not None:
                pass
            await sub.recv(timeout=10)
            assert sub.stats.received > received_before
            rss_after = psutil.Process(talker.pid).memory_info().rss
    finally:
        if flood is not None:
            stop(flood)
        stop(talker)
    assert rss_after - rss_before < 32 * MiB, (rss_before, rss_after)


async def test_an_oversize_multipart_is_dropped_at_the_proxy_and_later_messages_arrive(runtime_dir):
    """A 100-part ~100 MiB multipart with max_msg_size 1 MiB, and 20k empty parts: dropped as read, never
    forwarded; the valid message after each arrives."""
    from bus.config import BusConfig
    from bus.proxy import proxy_in_background

    config = BusConfig.local(runtime_dir, max_msg_size=MiB, stats_interval_s=0.2)
    async with proxy_in_background(config) as proxy, Subscriber(config, ["big/"]) as sub, Publisher(config) as pub:
        chunk = os.urandom(MiB - 1024)
        pub.publish_raw([b"big/a", *([chunk] * 100)])
        await pub.publish("big/a", Blob(label="after-size", data=np.zeros(4, np.uint8)))
        pub.publish_raw([b"big/a", *([b""] * 20_000)])
        await pub.publish("big/a", Blob(label="after-parts", data=np.zeros(4, np.uint8)))
        labels = [(await sub.recv(timeout=20)).msg.label for _ in range(2)]
        assert labels == ["after-size", "after-parts"]
        assert await _counter(proxy, "dropped_size", 1) == 1
        assert await _counter(proxy, "dropped_parts", 1) == 1
        assert sub.stats.bad.total() == 0  # nothing oversize ever reached the subscriber

"""Pub/sub through a real proxy over ipc://: delivery, handshake, gaps, both policies, fuzzed input."""

from __future__ import annotations

import asyncio
import json

import msgpack
import numpy as np
import pytest
import zmq
import zmq.asyncio

from benchmarks.bus.messages import Blob, Text
from bus.codec import encode
from bus.config import BusConfig
from bus.message import Stats
from bus.pubsub import BusNotReady, Publisher, Subscriber

from .conftest import spawn, stop


async def test_messages_arrive_in_order_with_arrays(proxy, bus_config):
    async with Subscriber(bus_config, ["text/", "frames/"]) as sub, Publisher(bus_config, src="p1") as pub:
        for i in range(20):
            await pub.publish("text/a", Text(text=f"m{i}"))
        frame = np.arange(480 * 640 * 3, dtype=np.uint32).reshape(480, 640, 3).astype(np.uint8)
        await pub.publish("frames/cam0", Blob(label="f", data=frame))
        got = [await sub.recv(timeout=5) for _ in range(21)]
    texts = [e.msg.text for e in got if e.topic == "text/a"]
    assert texts == [f"m{i}" for i in range(20)]
    assert [e.seq for e in got if e.topic == "text/a"] == list(range(20))
    (f,) = [e for e in got if e.topic == "frames/cam0"]
    np.testing.assert_array_equal(f.msg.data, frame)
    assert f.src == "p1" and f.seq == 0
    assert sub.stats.gaps == 0 and not sub.stats.bad


async def test_prefix_filtering(proxy, bus_config):
    async with Subscriber(bus_config, ["events/cam1"]) as sub, Publisher(bus_config) as pub:
        await pub.publish("events/cam0", Text(text="other camera"))
        await pub.publish("captions/cam1", Text(text="other kind"))
        await pub.publish("events/cam1", Text(text="mine"))
        env = await sub.recv(timeout=5)
    assert env.msg.text == "mine"


async def test_subscriber_start_fails_clearly_without_proxy(bus_config):
    sub = Subscriber(bus_config, ["x/"])
    try:
        await sub.start(timeout=0.3)
    except BusNotReady as exc:
        assert "no proxy" in str(exc)
    else:
        raise AssertionError("start() succeeded without a proxy")
    pub = Publisher(bus_config)
    try:
        await pub.ready(timeout=0.3)
    except BusNotReady:
        pass
    else:
        raise AssertionError("ready() succeeded without a proxy")
    finally:
        pub.close(0)


async def test_handshake_waits_for_a_proxy_started_later(bus_config):
    """No sleep stands in for the handshake: a subscriber started first becomes ready with the proxy."""
    from bus.proxy import Proxy

    sub = Subscriber(bus_config, ["late/"])
    starting = asyncio.create_task(sub.start(timeout=10))
    await asyncio.sleep(0.3)
    assert not starting.done()
    proxy = Proxy(bus_config)
    ptask = asyncio.create_task(proxy.run())
    try:
        await starting
        async with Publisher(bus_config) as pub:
            await pub.publish("late/x", Text(text="first"))  # the very first message is not lost
            assert (await sub.recv(timeout=5)).msg.text == "first"
    finally:
        sub.close()
        ptask.cancel()
        await asyncio.gather(ptask, return_exceptions=True)


async def test_gap_detection_per_publisher(proxy, bus_config):
    async with Subscriber(bus_config, ["ev/"]) as sub, Publisher(bus_config) as pub:
        for seq in (0, 1, 2, 5, 6):  # 3 and 4 lost
            pub.publish_raw(encode("ev/a", Text(text=str(seq)), seq=seq, src="A", t_ns=0))
        for seq in (0, 1, 2):  # an independent publisher on the same topic: its own seq stream
            pub.publish_raw(encode("ev/a", Text(text=str(seq)), seq=seq, src="B", t_ns=0))
        pub.publish_raw(encode("ev/a", Text(text="restart"), seq=0, src="A", t_ns=0))
        got = [await sub.recv(timeout=5) for _ in range(9)]
    assert [e.src for e in got] == ["A"] * 5 + ["B"] * 3 + ["A"]
    assert sub.stats.gaps == 2
    assert sub.stats.resets == 1


async def test_latest_policy_slow_consumer_gets_newest(proxy, bus_config):
    """frames/: a consumer slower than the stream skips to the newest frame; replaced ones are counted."""
    async with Subscriber(bus_config, ["frames/"]) as sub, Publisher(bus_config) as pub:

        async def produce():
            for i in range(40):
                await pub.publish("frames/cam0", Blob(label=str(i), data=np.full((64, 64, 3), i, np.uint8)))
                await asyncio.sleep(0.005)  # a 200 Hz camera

        producer = asyncio.create_task(produce())
        labels = []
        while True:
            env = await sub.recv(timeout=5)
            labels.append(int(env.msg.label))
            if labels[-1] == 39:
                break
            await asyncio.sleep(0.05)  # slow processing (never blocks the loop)
        await producer
    assert labels == sorted(labels)
    assert len(labels) < 40
    assert sub.stats.superseded > 0
    assert sub.stats.superseded + len(labels) == sub.stats.received
    assert sub.stats.gaps == 0  # superseded frames are not gaps: they reached this process


async def test_reliable_policy_slow_consumer_gets_everything(proxy, bus_config):
    n = 3000
    async with Subscriber(bus_config, ["events/"]) as sub, Publisher(bus_config) as pub:
        for i in range(n):
            pub.publish_nowait("events/cam0", Text(text=str(i)))
        got = []
        for _ in range(n):
            env = await sub.recv(timeout=10)
            got.append(int(env.msg.text))
            if len(got) % 500 == 0:
                await asyncio.sleep(0.02)  # a consumer that falls behind now and then
    assert got == list(range(n))
    assert sub.stats.gaps == 0


async def test_publisher_never_blocks_on_a_stalled_subscriber(proxy, bus_config):
    """A subscriber that never reads: the publisher keeps returning; excess is dropped, not queued forever."""
    ctx = zmq.asyncio.Context.instance()
    stalled = ctx.socket(zmq.SUB)
    stalled.setsockopt(zmq.RCVHWM, 2)
    stalled.connect(bus_config.endpoint("sub"))
    stalled.subscribe(b"")
    payload = np.zeros(256 * 1024, np.uint8)
    try:
        async with Publisher(bus_config) as pub:

            async def flood():
                for i in range(1500):
                    await pub.publish("frames/cam0" if i % 2 else "events/cam0", Blob(data=payload))

            await asyncio.wait_for(flood(), timeout=60)  # a liveness bound: it would hang if it blocked
            assert pub.published == 1500
    finally:
        stalled.close(linger=0)


async def test_proxy_publishes_its_counters(proxy, bus_config):
    async with Subscriber(bus_config, ["stats/bus"]) as sub, Publisher(bus_config) as pub:
        await pub.publish("x/y", Text(text="counted"))
        for _ in range(20):
            env = await sub.recv(timeout=5)
            assert isinstance(env.msg, Stats) and env.msg.node == "bus"
            if env.msg.counters["frontend_msgs_in"] >= 2:  # topic + header parts of our message
                break
        else:
            raise AssertionError("proxy counters never showed our message")
    assert env.msg.counters["probes_answered"] >= 1


def _bad_messages(rng: np.random.Generator, good: list[bytes]):
    """Yield malformed multiparts of many kinds, all on a subscribed topic."""
    header = msgpack.unpackb(good[1])
    kinds = [
        lambda: [good[0]],
        lambda: [good[0], rng.bytes(int(rng.integers(0, 64)))],
        lambda: [good[0], good[1]],  # buffer missing
        lambda: [good[0], good[1], good[2], b"extra"],
        lambda: [good[0], good[1], rng.bytes(int(rng.choice([0, 1, 7, 9, 16, 40])))],  # wrong buffer length
        lambda: [good[0], msgpack.packb({**header, "type": "Nope"}), good[2]],
        lambda: [good[0], msgpack.packb({**header, "v": 99}), good[2]],
        lambda: [good[0], msgpack.packb({**header, "seq": "x"}), good[2]],
        lambda: [good[0], msgpack.packb({**header, "body": {**header["body"], "label": 3}}), good[2]],
        lambda: [
            good[0],
            msgpack.packb(
                {**header, "body": {**header["body"], "data": {"nd": 0, "dtype": "float64", "shape": [4, 4]}}}
            ),
            good[2],
        ],
        lambda: [b"fuzz/\xff\xfe", good[1], good[2]],
        lambda: [good[0], *[rng.bytes(40_000) for _ in range(4)]],  # oversize in total (limit 100 kB)
        lambda: [good[0], *(rng.bytes(int(rng.integers(0, 30))) for _ in range(int(rng.integers(2, 6))))],
    ]
    while True:
        yield kinds[int(rng.integers(len(kinds)))]()


async def test_fuzz_bad_messages_never_stop_delivery(runtime_dir):
    """Thousands of malformed multiparts interleaved with good ones: every good one arrives."""
    from bus.proxy import Proxy

    config = BusConfig.local(runtime_dir, max_msg_size=100_000, stats_interval_s=0.5)
    proxy = Proxy(config)
    ptask = asyncio.create_task(proxy.run())
    rng = np.random.default_rng(1234)
    n_good, n_bad = 1000, 4000
    try:
        async with Subscriber(config, ["fuzz/"]) as sub, Publisher(config) as pub:
            template = [bytes(p) for p in encode("fuzz/a", Blob(data=np.zeros(8, np.uint8)), seq=0, src="x", t_ns=0)]
            bad = _bad_messages(rng, template)
            for i in range(n_good):
                pub.publish_nowait("fuzz/a", Blob(label=str(i), data=np.full(8, i % 256, np.uint8)))
                for _ in range(n_bad // n_good):
                    pub.publish_raw(next(bad))
                if i % 100 == 0:
                    await asyncio.sleep(0)
            labels = [int((await sub.recv(timeout=10)).msg.label) for _ in range(n_good)]
            # everything sent has reached the subscriber once its counters account for all of it
            for _ in range(100):
                if sub.stats.received >= n_good + n_bad - (n_bad // 13) * 3:  # bad topic, empty, oversize
                    break
                await asyncio.sleep(0.05)
            for _ in range(100):  # the proxy publishes its counters every stats_interval_s
                if proxy.counters.get("dropped_size"):
                    break
                await asyncio.sleep(0.05)
    finally:
        ptask.cancel()
        await asyncio.gather(ptask, return_exceptions=True)
    assert labels == list(range(n_good))
    assert sub.stats.gaps == 0
    assert sum(sub.stats.bad.values()) >= n_bad * 0.7  # the rest were not subscribed (bad topic) or empty
    assert {
        "bad_part_count",
        "bad_header",
        "unknown_type",
        "newer_version",
        "invalid_body",
        "bad_buffer",
    } <= set(sub.stats.bad)
    assert proxy.counters["dropped_size"] > 0  # oversize in total: dropped at the proxy, never forwarded
    assert "oversize" not in sub.stats.bad


async def test_multi_process_pubsub_through_proxy_process(bus_config):
    """Three real processes: proxy, talker, listener (python -m benchmarks.bus.demo)."""
    cfg = bus_config.model_dump_json()
    proxy = spawn("-m", "benchmarks.bus.demo", "proxy", "--bus-json", cfg)
    listener = spawn(
        "-m", "benchmarks.bus.demo", "listener", "--bus-json", cfg, "--topics", "demo/text", "--count", "30", "--json"
    )
    talker = None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(listener.stdout.readline), 20)
        assert line.strip() == "ready"
        talker = spawn(
            "-m",
            "benchmarks.bus.demo",
            "talker",
            "--bus-json",
            cfg,
            "--rate",
            "200",
            "--count",
            "30",
            "--no-frames",
            "--src",
            "talker-1",
        )
        out, err = await asyncio.to_thread(listener.communicate, timeout=30)
        assert listener.returncode == 0, err
        assert (await asyncio.to_thread(talker.wait, 30)) == 0
    finally:
        for p in (talker, listener, proxy):
            if p is not None:
                stop(p)
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["msg"]["text"] for r in rows] == [f"hello {i}" for i in range(30)]
    assert {r["src"] for r in rows} == {"talker-1"}
    assert [r["seq"] for r in rows] == list(range(30))


async def test_back_pressure_pauses_and_resumes_without_loss(proxy, runtime_dir):
    """A consumer that stops reading: the subscriber stops draining at reliable_hwm (ZMQ and the proxy
    queue the rest) and, once the consumer reads again, drains what was queued meanwhile, in order."""
    config = BusConfig.local(runtime_dir, stats_interval_s=0.2, ready_timeout_s=10.0, reliable_hwm=50)
    n = 600
    async with Subscriber(config, ["events/"]) as sub, Publisher(config) as pub:
        for i in range(n):
            pub.publish_nowait("events/cam0", Text(text=str(i)))
            if i % 25 == 24:
                await asyncio.sleep(0.005)  # paced under the publisher's own HWM of 50
        await asyncio.sleep(0.2)  # nothing reads: the subscriber must have paused at 50 pending
        assert sub.stats.received <= 50 + 1
        got = [int((await sub.recv(timeout=5)).msg.text) for _ in range(n)]
    assert got == list(range(n))
    assert sub.stats.gaps == 0


async def test_close_wakes_a_blocked_recv(proxy, bus_config):
    sub = await Subscriber(bus_config, ["events/"]).start()
    waiting = asyncio.create_task(sub.recv(timeout=5))
    await asyncio.sleep(0.05)
    sub.close()
    with pytest.raises(EOFError):
        await waiting

"""Replay onto a real bus: verbatim payloads, timing scaled by --rate, topic/start filters, loop, pause,
waiting for the consumer side, and the CLI end to end."""

from __future__ import annotations

import asyncio
import json
import time
from typing import ClassVar

import pytest

from benchmarks.bus.messages import Text
from bus.codec import encode
from bus.mcapfile import BusMcapWriter, pack_message
from bus.message import Message, register
from bus.pubsub import Publisher, Subscriber
from bus.record import Recorder
from bus.replay import Replayer
from tests.record.conftest import perception_run, sample_blob, write_synthetic


def keep_all(config):
    """A subscriber config without newest-wins conflation, so a test can count every message."""
    return config.model_copy(update={"latest_prefixes": []})


async def collect(sub: Subscriber, n: int, timeout: float = 30.0) -> list[tuple[float, object]]:
    got = []
    async with asyncio.timeout(timeout):
        while len(got) < n:
            env = await sub.recv()
            got.append((time.monotonic(), env))
    return got


async def test_cli_replay_of_a_recording_reproduces_payloads_bitwise(proxy, bus_config, config_file, runtime_dir):
    path = runtime_dir / "session.mcap"
    recorder = Recorder(bus_config, path, topics=["demo/", "frames/"], flush_interval_s=0.2)
    rec_task = asyncio.create_task(recorder.run())
    await recorder.ready.wait()
    live = []
    async with Subscriber(keep_all(bus_config), ["demo/", "frames/"]) as live_sub:
        pub = Publisher(bus_config, src="camera")
        await pub.ready()
        for i in range(30):
            await pub.publish("frames/cam0" if i % 2 else "demo/blob", sample_blob(i))
            await pub.publish("demo/text", Text(text=f"caption {i}"))
            await asyncio.sleep(0.005)
        live = [env for _, env in await collect(live_sub, 60)]
        pub.close()
    while recorder.stats.messages < 60:
        await asyncio.sleep(0.05)
    rec_task.cancel()
    await asyncio.gather(rec_task, return_exceptions=True)

    async with Subscriber(keep_all(bus_config), ["demo/", "frames/"]) as sub:
        code, out, err = await perception_run("replay", str(path), "--rate", "0", "--config", str(config_file))
        assert code == 0, err
        assert json.loads(out.strip().splitlines()[-1])["messages"] == 60
        replayed = [env for _, env in await collect(sub, 60)]
    key = lambda e: (e.topic, e.seq)  # noqa: E731
    live.sort(key=key)
    replayed.sort(key=key)
    for a, b in zip(live, replayed, strict=True):
        assert (a.topic, a.type, a.seq, a.src, a.t) == (b.topic, b.type, b.seq, b.src, b.t)
        if a.type == "Blob":
            assert a.msg.data.dtype == b.msg.data.dtype and a.msg.data.shape == b.msg.data.shape
            assert a.msg.data.tobytes() == b.msg.data.tobytes()
        else:
            assert a.msg == b.msg


async def replay_span(bus_config, path, rate: float, n: int) -> float:
    """Seconds between the first and the last message arriving at a subscriber."""
    async with Subscriber(keep_all(bus_config), ["demo/"]) as sub:
        task = asyncio.create_task(Replayer(bus_config, path, rate=rate, topics=["demo/"]).run())
        got = await collect(sub, n)
        await task
    return got[-1][0] - got[0][0]


async def test_rate_two_halves_the_wall_time(proxy, bus_config, runtime_dir):
    path = runtime_dir / "timed.mcap"
    write_synthetic(path, n=25, interval_ms=50)  # recorded span: 24 * 50 ms = 1.2 s
    at_1 = await replay_span(bus_config, path, 1.0, 25)
    at_2 = await replay_span(bus_config, path, 2.0, 25)
    # behaviour, not speed: generous bounds for a loaded machine
    assert 1.0 <= at_1 <= 2.0, at_1
    assert 1.5 <= at_1 / at_2 <= 2.6, (at_1, at_2)


async def test_topic_filter_and_start_offset(proxy, bus_config, runtime_dir):
    path = runtime_dir / "s.mcap"
    write_synthetic(path, n=20, interval_ms=100)
    async with Subscriber(keep_all(bus_config), ["demo/", "other/"]) as sub:
        stats = await Replayer(bus_config, path, rate=0, topics=["other/"], start_s=0.45).run()
        got = [env for _, env in await collect(sub, 15)]
        with pytest.raises(TimeoutError):
            await sub.recv(timeout=0.3)  # nothing else arrives
    assert stats.messages == 15
    assert [(e.topic, e.seq, e.msg.text) for e in got] == [("other/b", i, f"t{i}") for i in range(5, 20)]


async def test_loop_restarts_from_the_beginning(proxy, bus_config, runtime_dir):
    path = runtime_dir / "s.mcap"
    write_synthetic(path, n=5, interval_ms=10, topics=("demo/a",))
    async with Subscriber(keep_all(bus_config), ["demo/"]) as sub:
        task = asyncio.create_task(Replayer(bus_config, path, rate=0, loop=True).run())
        got = [env.seq for _, env in await collect(sub, 12)]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert got == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert sub.stats.resets >= 2  # the bus sees the repeated seqs as a publisher restart


async def test_paused_waits_for_resume_and_wait_for_waits_for_the_consumer(proxy, bus_config, runtime_dir):
    path = runtime_dir / "s.mcap"
    write_synthetic(path, n=3, interval_ms=10, topics=("demo/a",))
    async with Subscriber(keep_all(bus_config), ["demo/"]) as sub:
        replayer = Replayer(bus_config, path, rate=0, paused=True)
        task = asyncio.create_task(replayer.run())
        with pytest.raises(TimeoutError):
            await sub.recv(timeout=0.5)
        replayer.resume()
        assert [env.seq for _, env in await collect(sub, 3)] == [0, 1, 2]
        await task

        replayer = Replayer(bus_config, path, rate=0, wait_for=["ping/"])
        task = asyncio.create_task(replayer.run())
        with pytest.raises(TimeoutError):
            await sub.recv(timeout=0.5)
        assert not replayer.started.is_set()
        pub = Publisher(bus_config, src="consumer")
        await pub.ready()
        while not replayer.started.is_set():  # the consumer announces itself until replay starts
            await pub.publish("ping/consumer", Text(text="up"))
            await asyncio.sleep(0.05)
        pub.close()
        assert [env.seq for _, env in await collect(sub, 3)] == [0, 1, 2]
        await task


async def test_bad_arguments_are_refused(bus_config, runtime_dir):
    with pytest.raises(ValueError, match="rate"):
        Replayer(bus_config, runtime_dir / "x.mcap", rate=-1)
    with pytest.raises(ValueError, match="start"):
        Replayer(bus_config, runtime_dir / "x.mcap", start_s=-2)


@register
class Stamped(Message):
    """A message with capture-time fields, as perception's are (`*_ns` in the recording's clock)."""

    TYPE: ClassVar[str] = "test.Stamped"
    label: str
    t_capture_ns: int
    start_ns: int
    window_ns: int = 0  # a duration of zero stays zero: only positive stamps move


def write_stamped(path, n: int, t0: int, interval_ns: int) -> None:
    writer = BusMcapWriter(path)
    for i in range(n):
        t = t0 + i * interval_ns
        msg = Stamped(label=f"s{i}", t_capture_ns=t, start_ns=t - 10**9)
        parts = encode("stamped/cam0", msg, seq=i, src="old-run", t_ns=t + 1000)
        writer.write(
            "stamped/cam0",
            msg.TYPE,
            msg.VERSION,
            seq=i,
            t_pub=t + 1000,
            t_log=t + 2000,
            data=pack_message(parts[1], parts[2:]),
        )
    writer.close()


@pytest.mark.parametrize("rate", [0.0, 2.0])
async def test_restamp_moves_capture_times_to_the_replay_clock(proxy, bus_config, runtime_dir, rate):
    path = runtime_dir / "old.mcap"
    t_old = time.time_ns() - 3600 * 10**9  # recorded an hour ago
    write_stamped(path, n=6, t0=t_old, interval_ns=100_000_000)
    async with Subscriber(keep_all(bus_config), ["stamped/"]) as sub:
        before = time.time_ns()
        stats = await Replayer(bus_config, path, rate=rate, restamp=True).run()
        got = [env for _, env in await collect(sub, 6)]
        after = time.time_ns()
    assert stats.messages == 6 and stats.not_restamped == 0
    assert [(e.seq, e.src, e.msg.label) for e in got] == [(i, "old-run", f"s{i}") for i in range(6)]
    scale = 1.0 if rate == 0 else 1.0 / rate
    for i, e in enumerate(got):
        assert before <= e.msg.t_capture_ns <= after + 10**9  # now, not an hour ago
        assert before <= e.t <= after
        assert e.msg.t_capture_ns - e.msg.start_ns == round(10**9 * scale)  # spans follow the replay clock
        assert e.msg.t_capture_ns - got[0].msg.t_capture_ns == round(i * 100_000_000 * scale)
        assert e.msg.window_ns == 0
    plain = await replay_all(bus_config, path)
    assert [e.msg.t_capture_ns for e in plain] == [t_old + i * 100_000_000 for i in range(6)]  # without: as recorded


async def replay_all(bus_config, path) -> list:
    async with Subscriber(keep_all(bus_config), ["stamped/"]) as sub:
        await Replayer(bus_config, path, rate=0).run()
        return [env for _, env in await collect(sub, 6)]


async def test_cli_restamp_reports_what_it_could_not_restamp(proxy, config_file, runtime_dir):
    path = runtime_dir / "mixed.mcap"
    write_synthetic(path, n=3)  # Blob and Text: types the CLI knows (the benchmarks' message plug-in)
    code, out, err = await perception_run("replay", str(path), "--config", str(config_file), "--rate", "0", "--restamp")
    assert code == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["messages"] == 6 and summary["not_restamped"] == 0

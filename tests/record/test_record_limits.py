"""The recorder under hostile conditions, on a real bus: a stalled disk (the writer queue is bounded in
bytes, drops are counted and stored), a flood of invented topics (bounded, counted), a full disk and a
read-only one (a clear error, the rest of the bus unaffected, and the file so far readable, by the official
mcap reader too), and `record OUT` never truncating an existing file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading

import numpy as np
import pytest

from benchmarks.bus.messages import Blob, Text
from bus.mcapfile import SeqTracker, load_metadata, recover, scan, to_stored
from bus.pubsub import Publisher, Subscriber
from bus.record import Recorder, _WriterThread
from tests.record.conftest import perception_run

MIB = 2**20


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class StalledWriter(_WriterThread):
    """A disk that does not move until the test opens `gate`: every write waits for it."""

    gate = threading.Event()

    def _write(self, item) -> None:
        self.gate.wait()
        super()._write(item)


class StalledRecorder(Recorder):
    writer_class = StalledWriter


async def until(predicate, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def recorded(path) -> list[tuple[str, int]]:
    return [(c.topic, to_stored(c, m).seq) for c, m in scan(path)]


async def test_a_stalled_disk_drops_and_counts_instead_of_growing(proxy, bus_config, runtime_dir):
    cap, size, n = 4 * MIB, 256 * 1024, 400  # 100 MiB offered to a recorder that may hold 4 MiB
    config = bus_config.model_copy(update={"max_msg_size": 2 * MIB})
    out = runtime_dir / "stalled.mcap"
    StalledWriter.gate.clear()
    recorder = StalledRecorder(config, out, topics=["demo/"], max_queue_bytes=cap, flush_interval_s=0.05)
    task = asyncio.create_task(recorder.run())
    await recorder.ready.wait()
    pub = Publisher(config, src="flood")
    await pub.ready()
    payload = np.random.default_rng(0).integers(0, 255, size=size, dtype=np.uint8)
    rss0 = rss_bytes()
    try:
        for i in range(n):  # one at a time: nothing piles up in ZMQ, only in the recorder (if it let it)
            await pub.publish("demo/big", Blob(label=str(i), data=payload))
            await until(lambda i=i: recorder.stats.received > i or task.done())
            assert not task.done(), task
        grown = rss_bytes() - rss0
        s = recorder.stats
        queued = s.received - s.dropped
        assert s.received == n
        assert recorder.inbox.bytes <= cap and s.max_queued_bytes <= cap
        assert queued * size <= cap < (queued + 1) * (size + 1024)  # it filled up to the bound, no further
        assert s.dropped == n - queued and s.dropped_by_topic == {"demo/big": s.dropped}
        assert s.dropped_bytes >= s.dropped * size
        assert grown < cap + 40 * MIB, f"RSS grew {grown / MIB:.0f} MiB with a {cap / MIB:.0f} MiB queue"
    finally:
        StalledWriter.gate.set()  # the disk moves again: what was queued is written
        pub.close()
    await until(lambda: recorder.stats.messages == queued)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert recorded(out) == [("demo/big", i) for i in range(queued)]  # the oldest kept, the rest dropped
    meta = load_metadata(out)["recording"]
    assert int(meta["dropped"]) == n - queued and int(meta["received"]) == n
    assert json.loads(meta["dropped_by_topic"]) == {"demo/big": n - queued}
    assert int(meta["max_queue_bytes"]) == cap and int(meta["max_queued_bytes"]) <= cap


async def test_invented_topics_beyond_the_limit_are_dropped_and_counted(proxy, bus_config, runtime_dir):
    out = runtime_dir / "topics.mcap"
    recorder = Recorder(bus_config, out, topics=["x/"], max_topics=3)
    task = asyncio.create_task(recorder.run())
    await recorder.ready.wait()
    pub = Publisher(bus_config, src="inventor")
    await pub.ready()
    for i in range(20):  # 20 topics, 2 messages each
        for _ in range(2):
            await pub.publish(f"x/t{i}", Text(text=str(i)))
    await until(lambda: recorder.stats.received == 40)
    pub.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    s = recorder.stats
    assert s.messages == 6 and s.dropped == s.dropped_topic_limit == 34
    assert sorted(s.by_topic) == sorted(s.gaps) == ["x/t0", "x/t1", "x/t2"]
    assert sorted({t for t, _ in recorded(out)}) == ["x/t0", "x/t1", "x/t2"]
    meta = load_metadata(out)["recording"]
    assert int(meta["dropped_topic_limit"]) == 34 and json.loads(meta["dropped_by_topic"]) == {}


def test_seq_tracker_keeps_a_bounded_number_of_streams():
    seqs = SeqTracker(max_streams=4)
    for src in range(100):  # a publisher can claim any `src`
        seqs.add(f"src{src}", "demo/a", 0)
    assert len(seqs.last) == 4 and seqs.gaps == {"demo/a": 0}
    seqs.add("src99", "demo/a", 3)  # still tracked: the gap counts
    assert seqs.gaps == {"demo/a": 2}


def mount_tmpfs(where, options: str):
    where.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (root and mount(8) needed): {exc}")


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs (root only), unmounted afterwards."""
    where = tmp_path / "disk"
    mount_tmpfs(where, "size=2m")
    yield where
    subprocess.run(["umount", str(where)], check=False)


@pytest.fixture
def read_only_disk(tmp_path):
    """A read-only tmpfs (root only: as root, a 0555 directory would not stop a write), unmounted afterwards."""
    where = tmp_path / "ro"
    mount_tmpfs(where, "size=1m,ro")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def official_messages(path) -> tuple[list[int], str | None]:
    """The seqs the official mcap reader streams from `path` in file order (NonSeekingReader: a file cut by a
    full disk has no footer), and the error that ended the stream early, if any."""
    from mcap.reader import NonSeekingReader

    seqs: list[int] = []
    try:
        with open(path, "rb") as f:
            for _schema, _channel, message in NonSeekingReader(f).iter_messages(log_time_order=False):
                seqs.append(message.sequence)
    except Exception as exc:  # the cut tail
        return seqs, f"{type(exc).__name__}: {exc}"
    return seqs, None


async def drain_into(sub: Subscriber, seen: list[int]) -> None:
    async for env in sub:
        seen.append(env.seq)


async def test_a_full_disk_is_a_clear_error_and_the_file_so_far_is_readable(proxy, bus_config, runtime_dir, tiny_disk):
    out = tiny_disk / "full.mcap"
    recorder = Recorder(
        bus_config, out, topics=["demo/"], compression="none", chunk_size=64 * 1024, flush_interval_s=0.05
    )
    task = asyncio.create_task(recorder.run())
    await recorder.ready.wait()
    other = await Subscriber(bus_config, ["demo/"], name="other").start()  # the rest of the bus
    seen: list[int] = []
    reader = asyncio.create_task(drain_into(other, seen))
    pub = Publisher(bus_config, src="camera")
    await pub.ready()
    rng = np.random.default_rng(1)
    sent: list[bytes] = []
    for i in range(200):  # 12.5 MiB of incompressible data for a 2 MiB disk
        data = rng.integers(0, 255, size=64 * 1024, dtype=np.uint8)
        sent.append(data.tobytes())
        await pub.publish("demo/blob", Blob(label=str(i), data=data))
        await until(lambda i=i: recorder.stats.received > i or task.done())
        if task.done():
            break
    assert task.done(), "the recorder kept going on a full disk"
    with pytest.raises(RuntimeError, match="disk full") as err:
        await task
    assert str(out) in str(err.value) and "--recover" in str(err.value)
    for i in range(len(sent), len(sent) + 20):  # the bus goes on without the recorder
        await pub.publish("demo/blob", Blob(label=str(i), data=np.zeros(8, np.uint8)))
    await until(lambda: len(seen) == len(sent) + 20, timeout=30)
    reader.cancel()
    other.close()
    pub.close()
    assert seen == list(range(len(sent) + 20)) and other.stats.gaps == 0  # the other subscriber lost nothing

    kept = [to_stored(c, m) for c, m in scan(out)]
    assert len(kept) > 5 and [m.seq for m in kept] == list(range(len(kept)))  # a prefix, no holes
    for m in kept:
        assert bytes(m.buffers[0]) == sent[m.seq]
    official, stopped = official_messages(out)  # what any MCAP tool reads from the cut file
    assert official == [m.seq for m in kept], stopped
    fixed = runtime_dir / "fixed.mcap"
    res = recover(out, fixed)
    assert res.messages == len(kept) and not res.complete
    assert "session" in load_metadata(fixed)


async def test_a_read_only_disk_is_a_clear_error_before_recording_and_the_bus_goes_on(
    proxy, bus_config, config_file, read_only_disk
):
    out = read_only_disk / "session.mcap"
    other = await Subscriber(bus_config, ["demo/"], name="other").start()
    pub = Publisher(bus_config, src="camera")
    await pub.ready()
    code, stdout, err = await perception_run("record", str(out), "--config", str(config_file))
    assert code != 0 and "Read-only file system" in err and str(out) in err, err
    assert "Traceback" not in err and stdout == "" and not out.exists()
    for i in range(10):
        await pub.publish("demo/t", Text(text=str(i)))
    got = [int((await other.recv(timeout=10)).msg.text) for _ in range(10)]
    assert got == list(range(10))
    pub.close()
    other.close()


async def test_record_refuses_an_existing_file_unless_forced(proxy, config_file, runtime_dir):
    out = runtime_dir / "keep.mcap"
    out.write_bytes(b"precious")
    code, stdout, err = await perception_run("record", str(out), "--duration", "0.3", "--config", str(config_file))
    assert code == 2 and "exists" in err and "--force" in err
    assert out.read_bytes() == b"precious"
    code, stdout, err = await perception_run(
        "record", "--recover", str(runtime_dir / "any.mcap"), str(out), "--config", str(config_file)
    )
    assert code == 2 and "exists" in err and out.read_bytes() == b"precious"

    code, stdout, err = await perception_run(
        "record", str(out), "--duration", "0.3", "--force", "--config", str(config_file)
    )
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["dropped"] == 0
    assert "session" in load_metadata(out)

"""Same-host frames through shared memory (bus/shm.py): bitwise round trips across processes, each lifetime
rule of docs/bus.md ("Same-host frames"), bytes for whoever cannot map, and recordings with real bytes.

Peers are real processes (tests/bus/shm_peer.py) on a real proxy; frame i of a stream is
`shm_peer.frame(i)`, so every side checks pixels bitwise from the label alone."""

from __future__ import annotations

import asyncio
import gc
import json
import mmap
import os
import signal
import socket
import subprocess

import msgpack
import numpy as np
import pydantic
import pytest

from benchmarks.bus.messages import Blob
from bus import shm
from bus.codec import DecodeError, decode, encode
from bus.config import BusConfig
from bus.mcapfile import iter_messages, read_header
from bus.proxy import proxy_in_background
from bus.pubsub import Publisher, Subscriber
from bus.record import Recorder
from bus.replay import Replayer
from tests.bus.conftest import spawn, stop
from tests.bus.shm_peer import frame

SHAPE = (256, 256, 3)  # 196,608 B: above bus.shm.min_bytes
FRAME_BYTES = int(np.prod(SHAPE))


def shm_config(runtime_dir, **shm_keys) -> BusConfig:
    return BusConfig.local(
        runtime_dir,
        stats_interval_s=0.2,
        ready_timeout_s=10.0,
        latest_hwm=64,  # the tests pace nothing: let every reference queue
        shm={"enabled": True, "slots": 4, **shm_keys},
    )


class Peer:
    """A tests.bus.shm_peer process driven over stdin/stdout."""

    def __init__(self, role: str, config: BusConfig, topic: str, *extra: str) -> None:
        self.proc = spawn(
            "-m", "tests.bus.shm_peer", role, "--bus-json", config.model_dump_json(), "--topic", topic, *extra,
            stdin=subprocess.PIPE,
        )  # fmt: skip

    async def expect(self, word: str, timeout: float = 30.0) -> str:
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        if not line.startswith(word):
            raise AssertionError(f"peer said {line!r}, expected {word!r}: {stop(self.proc)[1][-2000:]}")
        return line[len(word) :].strip()

    def say(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        stop(self.proc)


def check(msg: Blob) -> None:
    assert np.array_equal(msg.data, frame(int(msg.label), SHAPE)), f"frame {msg.label} differs"


def mapped_segments(topic: str) -> list[str]:
    """Lines of this process's memory map that are the shared-memory segments of `topic`."""
    with open("/proc/self/maps") as f:
        return [line for line in f if f"memfd:{shm.MEMFD_PREFIX}{topic}" in line]


async def test_frames_round_trip_bitwise_across_processes(runtime_dir):
    """Copied and loaned frames from another process arrive bitwise, read-only, by reference; a raw
    subscriber (a recorder, a bridge) gets the bytes and a header without `shm`."""
    config = shm_config(runtime_dir, slots=32)  # 12 frames: the ring never wraps here
    async with proxy_in_background(config):
        async with (
            Subscriber(config, ["frames/"], policy="reliable") as sub,
            Subscriber(config, ["frames/"], raw=True, policy="reliable") as raw,
        ):
            peer = Peer("pub", config, "frames/rt", "--loan")
            try:
                await peer.expect("ready")
                peer.say("go 12")
                got = [await sub.recv(timeout=20) for _ in range(12)]
                raws = [await raw.recv(timeout=20) for _ in range(12)]
                stats = json.loads(await peer.expect("done"))
            finally:
                peer.close()
    assert stats == {"rings": 1, "sent": 12}  # every frame by reference, half of them loaned (no copy)
    assert [int(e.msg.label) for e in got] == list(range(12))
    for env in got:
        check(env.msg)
        assert not env.msg.data.flags.writeable
    for r in raws:
        assert len(r.parts) == 3 and len(r.parts[2]) == FRAME_BYTES
        assert "shm" not in msgpack.unpackb(r.parts[1].bytes)
        check(decode(r.parts).msg)  # what a recorder stores decodes anywhere, no mapping needed
    assert sub.stats.bad == {} and sub.stats.shm_stale == 0


async def test_slow_subscriber_sees_its_frame_intact_or_a_newer_one(runtime_dir):
    """A frame held while the publisher laps the ring is never overwritten (its slot is skipped). A
    subscriber that reads references after their slot was reused gets the ring's newest frame instead,
    and drops the older references behind it as superseded: never a frame with other pixels."""
    config = shm_config(runtime_dir, slots=4)
    async with proxy_in_background(config):
        async with Subscriber(config, ["frames/"], policy="reliable") as sub:
            peer = Peer("pub", config, "frames/slow")
            try:
                await peer.expect("ready")
                peer.say("go 1")
                held = (await sub.recv(timeout=20)).msg
                await peer.expect("done")
                peer.say("go 12")
                # block this event loop (the subscriber reads nothing) until the ring has gone round 3 times
                assert peer.proc.stdout.readline().startswith("done")
                later = [(await sub.recv(timeout=20)).msg]
                async with asyncio.timeout(20):
                    while sub.stats.received < 13:  # frame 0, then 12 references
                        await asyncio.sleep(0.01)
                while (env := sub.recv_nowait()) is not None:
                    later.append(env.msg)
            finally:
                peer.close()
    check(held)  # slot pinned all along: still frame 0
    assert int(later[0].label) == 12  # the first reference read was stale: the newest frame came instead
    for msg in later:
        check(msg)
    assert sub.stats.superseded + sub.stats.shm_stale == 12 + 1 - len(later)
    assert sub.stats.shm_stale == 0 and sub.stats.bad == {}


async def test_publisher_sigkill_frees_its_memory(runtime_dir):
    """A publisher killed with SIGKILL leaves nothing in /dev/shm (its segments have no name there), a frame
    held across the kill stays readable, and the subscriber unmaps the segment once it holds no frame."""
    before = set(os.listdir("/dev/shm"))
    config = shm_config(runtime_dir)
    async with proxy_in_background(config):
        async with Subscriber(config, ["frames/"], policy="reliable") as sub:
            peer = Peer("pub", config, "frames/killed")
            try:
                await peer.expect("ready")
                peer.say("go 3")
                got = [(await sub.recv(timeout=20)).msg for _ in range(3)]
                await peer.expect("done")
                assert mapped_segments("frames/killed")
                peer.kill()
            finally:
                peer.close()
            held = got[0]  # mapped (the first max_borrowed frames are; the third was copied out)
            del got
            gc.collect()
            await asyncio.sleep(2 * shm.SWEEP_S)
            check(held)  # the publisher is gone; the frame we hold is not
            assert mapped_segments("frames/killed")
            del held
            gc.collect()
            async with asyncio.timeout(10):
                while mapped_segments("frames/killed"):
                    await asyncio.sleep(0.05)
    assert not {name for name in set(os.listdir("/dev/shm")) - before if "vljepa" in name}


async def test_subscriber_sigkill_holds_nothing(runtime_dir):
    """A subscriber that pins every slot and dies by SIGKILL releases them: the publisher goes back from
    bytes inline (all pinned) to references at once, with the same ring."""
    config = shm_config(runtime_dir, slots=4, max_borrowed=4)
    async with proxy_in_background(config), Publisher(config, src="cam") as pub:
        holder = Peer("hold", config, "frames/held", "--count", "4")
        try:
            await holder.expect("ready")
            for i in range(4):
                pub.publish_nowait("frames/held", Blob(label=str(i), data=frame(i, SHAPE)))
                await asyncio.sleep(0.01)
            assert json.loads(await holder.expect("holding")) == {"n": 4, "ok": True}
            pub.publish_nowait("frames/held", Blob(label="4", data=frame(4, SHAPE)))
            assert pub.shm_stats == {"rings": 1, "sent": 4, "full": 1}  # every slot pinned by the holder
            holder.kill()
        finally:
            holder.close()
        pub.publish_nowait("frames/held", Blob(label="5", data=frame(5, SHAPE)))
        assert pub.shm_stats == {"rings": 1, "sent": 5, "full": 1}


async def test_bound_reached_memory_stays_bounded(runtime_dir):
    """Memory per camera is `slots` frames whatever subscribers do. A subscriber process maps at most
    `max_borrowed` frames of a ring (the rest are copied out for it); with every slot pinned the
    publisher sends bytes inline, and subscribers still get every frame bitwise."""
    config = shm_config(runtime_dir, slots=4, max_borrowed=2)
    async with proxy_in_background(config):
        async with Subscriber(config, ["frames/"], policy="reliable") as sub, Publisher(config, src="cam") as pub:
            stats0 = dict(shm.mapper().stats)
            hoard = []
            for i in range(8):  # a hoarding consumer: 2 frames mapped, 6 copied, the publisher never starves
                pub.publish_nowait("frames/bound", Blob(label=str(i), data=frame(i, SHAPE)))
                hoard.append((await sub.recv(timeout=10)).msg)
            stats1 = dict(shm.mapper().stats)
            assert stats1.get("pinned", 0) - stats0.get("pinned", 0) == 2
            assert stats1.get("copied", 0) - stats0.get("copied", 0) == 6
            assert pub.shm_stats == {"rings": 1, "sent": 8}
            for msg in hoard:
                check(msg)
            del hoard
            gc.collect()

        bound = config.model_copy(update={"shm": config.shm.model_copy(update={"max_borrowed": 4})})
        async with Subscriber(bound, ["frames/"], policy="reliable") as sub, Publisher(bound, src="cam") as pub:
            hoard = []
            for i in range(6):  # 4 pinned (every slot), then inline bytes
                pub.publish_nowait("frames/bound2", Blob(label=str(i), data=frame(i, SHAPE)))
                hoard.append((await sub.recv(timeout=10)).msg)
            assert pub.shm_stats == {"rings": 1, "sent": 4, "full": 2}
            sizes = {
                int(end, 16) - int(start, 16)
                for start, end in (m.split()[0].split("-") for m in mapped_segments("frames/bound2"))
            }
            assert len(sizes) == 1 and sizes.pop() < 4 * (FRAME_BYTES + 3 * mmap.PAGESIZE)  # the ring, no more
            for msg in hoard:
                check(msg)
            del hoard, msg
            gc.collect()
            pub.publish_nowait("frames/bound2", Blob(label="6", data=frame(6, SHAPE)))
            check((await sub.recv(timeout=10)).msg)
            assert pub.shm_stats == {"rings": 1, "sent": 5, "full": 2}  # released: by reference again


async def test_cross_host_subscriber_gets_bytes(runtime_dir):
    """On a tcp:// bus (how another host joins) a publisher with shm enabled sends the bytes, and a
    subscriber off ipc:// never maps a reference: it rejects one instead of resolving it."""

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    config = shm_config(runtime_dir).model_copy(
        update={"pub": f"tcp://127.0.0.1:{port()}", "sub": f"tcp://127.0.0.1:{port()}"}
    )
    async with proxy_in_background(config):
        async with Subscriber(config, ["frames/"], policy="reliable") as sub:
            peer = Peer("pub", config, "frames/tcp", "--loan")
            try:
                await peer.expect("ready")
                peer.say("go 4")
                got = [await sub.recv(timeout=20) for _ in range(4)]
                stats = json.loads(await peer.expect("done"))
            finally:
                peer.close()
    assert stats == {}  # not an ipc:// bus: no ring at all
    for env in got:
        assert env.nbytes > FRAME_BYTES
        check(env.msg)

    ring = shm.ShmRing("frames/x", slots=2, capacity=FRAME_BYTES, max_borrowed=1)
    try:
        parts = encode("frames/x", Blob(label="0", data=frame(0, SHAPE)), seq=0, src="a", t_ns=0, place=ring.place_all)
        with pytest.raises(DecodeError) as err:
            decode(parts)  # a reader that maps nothing (another host, an older client)
        assert err.value.reason == "bad_buffer"
        check(decode(parts, resolve=shm.resolve).msg)
    finally:
        ring.close()


async def test_recorder_and_replay_carry_bytes(runtime_dir):
    """A recording of frames sent by reference holds the bytes (no `shm` key, no references); replaying it
    delivers the same frames."""
    config = shm_config(runtime_dir, slots=16)
    path = runtime_dir / "frames.mcap"
    async with proxy_in_background(config):
        recorder = Recorder(config, path, topics=["frames/"], flush_interval_s=0.2)
        task = asyncio.create_task(recorder.run())
        await recorder.ready.wait()
        async with Publisher(config, src="cam") as pub:
            for i in range(6):
                data = pub.loan("frames/rec", SHAPE) if i % 2 else frame(i, SHAPE)
                if i % 2:
                    data[...] = frame(i, SHAPE)
                pub.publish_nowait("frames/rec", Blob(label=str(i), data=data))
                await asyncio.sleep(0.01)
            async with asyncio.timeout(10):
                while recorder.stats.messages < 6:
                    await asyncio.sleep(0.02)
            assert pub.shm_stats == {"rings": 1, "sent": 6}
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

        stored = list(iter_messages(path))
        assert len(stored) == 6
        for m in stored:
            assert "shm" not in read_header(m.header)
            check(decode(m.parts()).msg)

        async with Subscriber(config.model_copy(update={"latest_prefixes": []}), ["frames/"]) as sub:
            replay = asyncio.create_task(Replayer(config, path, rate=0).run())
            replayed = [(await sub.recv(timeout=20)).msg for _ in range(6)]
            await replay
    assert [int(m.label) for m in replayed] == list(range(6))
    for msg in replayed:
        check(msg)


def test_hostile_references_are_rejects(tmp_path):
    """Forged references never map anything they should not, and fail as DecodeErrors with a reason."""
    ring = shm.ShmRing("frames/h", slots=2, capacity=FRAME_BYTES, max_borrowed=1)
    other = open(tmp_path / "plain", "wb+")
    try:
        good = encode("frames/h", Blob(label="0", data=frame(0, SHAPE)), seq=0, src="a", t_ns=0, place=ring.place_all)
        ref = msgpack.unpackb(good[2])

        def forged(**change) -> list:
            return [*good[:2], msgpack.packb({**ref, **change})]

        cases = {
            "shm_unavailable": [
                forged(seg=ref["seg"] ^ 1),  # another segment than the reference's
                forged(fd=other.fileno()),  # a plain file of this process
                forged(pid=2**22 + 7),  # no such process
            ],
            "bad_buffer": [
                forged(off=0),  # outside the slot
                forged(len=10**9),
                forged(slot=99),
                [*good[:2], b"\x93\x01\x02\x03"],  # not a map
                [*good[:2], msgpack.packb({**ref, "extra": 1})],
            ],
            "shm_stale": [forged(gen=ref["gen"] + 1)],
        }
        for reason, messages in cases.items():
            for parts in messages:
                with pytest.raises(DecodeError) as err:
                    decode(parts, resolve=shm.resolve)
                assert err.value.reason == reason, (reason, err.value)
        check(decode(good, resolve=shm.resolve).msg)
    finally:
        other.close()
        ring.close()


def test_config_is_validated():
    assert BusConfig().shm.enabled is False
    with pytest.raises(pydantic.ValidationError, match="max_borrowed"):
        BusConfig(shm={"slots": 2, "max_borrowed": 3})
    with pytest.raises(pydantic.ValidationError, match="slot"):
        BusConfig(shm={"slot": 4})

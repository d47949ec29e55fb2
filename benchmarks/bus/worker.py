"""One side (sender or receiver) of one benchmark run; started by benchmarks/bus/bench.py as its own process.

    python -m benchmarks.bus.worker send|recv --transport T --size BYTES --mode lat|thr [--count N] [--seconds S]

Protocol, identical for every transport: the sender sends warm-up messages (kind 0) every 5 ms until the
parent writes "go" on its stdin (the parent does so once the receiver printed "warm", i.e. the route is
up end to end); then measured messages (kind 1): paced for latency, as fast as possible for throughput;
then end markers (kind 2) every 20 ms until it is stopped. The receiver prints one JSON line of figures
and exits at the first end marker. Latency = receiver's monotonic clock at delivery (after decoding)
minus the sender's monotonic clock at send; CLOCK_MONOTONIC is shared by all processes of a host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import threading
import time
from typing import Any

import numpy as np

HDR = struct.Struct("<bq")  # kind, t_send (monotonic ns)
WARM, MEASURE, END = 0, 1, 2
TOPIC = "bench/x"


# -- transports: each gives send(kind, t_ns) and async recv() -> (kind, t_ns) ------------------------


class PyzmqRaw:
    """PUB/SUB multipart [topic, 9-byte header, payload], payload sent with copy=False: no envelope."""

    def __init__(self, args: argparse.Namespace, sending: bool) -> None:
        import zmq

        self.zmq = zmq
        ctx = zmq.Context.instance()
        self.sock = ctx.socket(zmq.PUB if sending else zmq.SUB)
        self.sock.setsockopt(zmq.SNDHWM if sending else zmq.RCVHWM, args.hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        if args.direct:  # one hop: the publisher binds, the subscriber connects
            ep = f"ipc://{args.runtime_dir}/direct"
            self.sock.bind(ep) if sending else self.sock.connect(ep)
        else:  # the bus's own route: through the proxy
            self.sock.connect(f"ipc://{args.runtime_dir}/{'pub' if sending else 'sub'}")
        if not sending:
            self.sock.subscribe(TOPIC.encode())
        self.payload = memoryview(np.zeros(args.size, np.uint8))

    async def start(self) -> None:
        pass

    def send(self, kind: int, t_ns: int) -> None:
        self.sock.send_multipart([TOPIC.encode(), HDR.pack(kind, t_ns), self.payload], copy=False)

    async def recv(self) -> tuple[int, int]:
        frames = self.sock.recv_multipart(copy=False)
        return HDR.unpack(frames[1].bytes)


class TypedBus:
    """Our bus: Publisher/Subscriber, envelope encode/decode and pydantic validation of a Blob."""

    def __init__(self, args: argparse.Namespace, sending: bool) -> None:
        from bus.config import BusConfig

        self.config = BusConfig.local(args.runtime_dir, reliable_hwm=args.hwm, latest_hwm=args.hwm, proxy_hwm=args.hwm)
        self.sending = sending
        self.data = np.zeros(args.size, np.uint8)

    async def start(self) -> None:
        import benchmarks.bus.messages  # noqa: F401  registers Blob, which the receiver decodes
        from bus.pubsub import Publisher, Subscriber

        if self.sending:
            self.pub = Publisher(self.config, src="bench")
            await self.pub.ready()
        else:
            self.sub = await Subscriber(self.config, [TOPIC], name="bench").start()

    def send(self, kind: int, t_ns: int) -> None:
        from benchmarks.bus.messages import Blob

        self.pub.publish_nowait(TOPIC, Blob(label=str(kind), t_mono_ns=t_ns, data=self.data))

    async def recv(self) -> tuple[int, int]:
        env = await self.sub.recv()
        return int(env.msg.label), env.msg.t_mono_ns

    def watch_stages(self) -> Stages:
        """`--stages`: stamp the receiver's steps (wake-up, read, decode, queue) with the monotonic clock."""
        import bus.pubsub

        stages = Stages()
        sub, drain, ingest, decode = self.sub, self.sub._drain, self.sub._ingest, bus.pubsub.decode

        def timed_drain(sync: Any) -> None:
            stages.wake = time.monotonic_ns()
            drain(sync)

        def timed_ingest(parts: Any) -> None:
            stages.read = time.monotonic_ns()
            ingest(parts)
            stages.queued = time.monotonic_ns()

        def timed_decode(*a: Any, **kw: Any) -> Any:
            stages.decode_start = time.monotonic_ns()
            try:
                return decode(*a, **kw)
            finally:
                stages.decoded = time.monotonic_ns()

        # the reader callback is registered once per socket: swap it on the loop
        for sync in list(sub._watched):
            sub._loop.remove_reader(sync.FD)
            sub._loop.add_reader(sync.FD, timed_drain, sync)
        sub._drain, sub._ingest = timed_drain, timed_ingest
        bus.pubsub.decode = timed_decode
        return stages


class Stages:
    """Where one bus message's one-way time goes on the receiving side (`--stages`, latency mode only):
    the last message's stamps, turned into per-stage durations by `take` once the caller has it."""

    NAMES = ("send_to_wake", "wake_to_read", "read_to_decode", "decode", "queue", "handoff")

    def __init__(self) -> None:
        self.wake = self.read = self.decode_start = self.decoded = self.queued = 0
        self.samples: dict[str, list[int]] = {name: [] for name in self.NAMES}

    def take(self, t_send: int, now: int) -> None:
        marks = (t_send, self.wake, self.read, self.decode_start, self.decoded, self.queued, now)
        if not all(marks[i] <= marks[i + 1] for i in range(len(marks) - 1)):
            return  # a wake-up that read an earlier message (warm-up): not this one's
        for name, a, b in zip(self.NAMES, marks, marks[1:], strict=False):  # 6 steps between 7 marks
            self.samples[name].append(b - a)

    def medians_us(self) -> dict[str, float]:
        return {k: float(np.median(v)) / 1e3 for k, v in self.samples.items() if v}


class TypedBusShm(TypedBus):
    """Our bus with same-host frames through shared memory (bus/shm.py): the header still goes through the
    proxy, the payload by reference. `loan`: the sender fills a loaned slot (no copy, as a camera
    decoding into it would); otherwise it publishes its own array, copied into a slot. Below
    `bus.shm.min_bytes` (64 KiB) the payload goes inline, as on `bus`."""

    def __init__(self, args: argparse.Namespace, sending: bool, loan: bool = True) -> None:
        super().__init__(args, sending)
        # bench/ as a `latest` topic (shared memory carries only those); the receiver counts every message
        from bus.config import ShmConfig

        self.config = self.config.model_copy(update={"latest_prefixes": ["bench/"], "shm": ShmConfig(enabled=True)})
        self.shape = (args.size,)
        self.use_loan = loan

    async def start(self) -> None:
        import benchmarks.bus.messages  # noqa: F401
        from bus.pubsub import Publisher, Subscriber

        if self.sending:
            self.pub = Publisher(self.config, src="bench")
            await self.pub.ready()
        else:
            self.sub = await Subscriber(self.config, [TOPIC], name="bench", policy="reliable").start()

    def counters(self) -> dict:
        """The receiver's shared-memory figures: drops of overwritten frames, frames mapped and copied."""
        from bus import shm

        st = self.sub.stats
        return {"shm_stale": st.shm_stale, "superseded": st.superseded, "ingested": st.received, **shm.mapper().stats}

    def send(self, kind: int, t_ns: int) -> None:
        from benchmarks.bus.messages import Blob

        data = self.pub.loan(TOPIC, self.shape) if self.use_loan else None
        self.pub.publish_nowait(TOPIC, Blob(label=str(kind), t_mono_ns=t_ns, data=self.data if data is None else data))


class TypedBusShmCopy(TypedBusShm):
    def __init__(self, args: argparse.Namespace, sending: bool) -> None:
        super().__init__(args, sending, loan=False)


class ShmRingDirect:
    """bus/shm.py's ring alone: payload written in place in a loaned slot, its reference and the 9-byte
    header over a direct ZeroMQ ipc PUB -> SUB (no proxy, no envelope); the receiver maps (pins) the slot
    and, behind a faster sender, takes the ring's newest frame as the bus does. The same-kind comparison
    for `iceoryx2`."""

    def __init__(self, args: argparse.Namespace, sending: bool) -> None:
        import zmq

        from bus import shm

        self.shm = shm
        ctx = zmq.Context.instance()
        self.sock = ctx.socket(zmq.PUB if sending else zmq.SUB)
        self.sock.setsockopt(zmq.SNDHWM if sending else zmq.RCVHWM, args.hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        ep = f"ipc://{args.runtime_dir}/direct"
        if sending:
            self.sock.bind(ep)
            self.ring = shm.ShmRing(TOPIC, slots=8, capacity=args.size, max_borrowed=2)
            self.size = args.size
        else:
            self.sock.connect(ep)
            self.sock.subscribe(b"")
            self.resolver = shm.Resolver()
        self.stale = self.superseded = 0

    async def start(self) -> None:
        pass

    def counters(self) -> dict:
        return {"shm_stale": self.stale, "superseded": self.superseded}

    def send(self, kind: int, t_ns: int) -> None:
        arr = self.ring.loan((self.size,), np.dtype(np.uint8))
        if arr is None:
            return
        head = HDR.pack(kind, t_ns)
        ref = self.ring.place([memoryview(arr)], [0])[0]
        self.ring.commit([b"", head, ref])  # stored beside the frame, for a receiver that falls behind
        self.sock.send_multipart([head, ref])

    async def recv(self) -> tuple[int, int]:
        from bus.codec import DecodeError

        while True:
            head, ref = self.sock.recv_multipart()
            parts = [b"", head, ref]
            newer = self.resolver.precheck(parts)
            if newer is not None:
                self.superseded += 1
                if not newer:
                    continue
                parts = newer
            try:
                try:
                    view = self.resolver(parts, [0])[2]  # pinned while `view` lives
                except self.shm.Stale as exc:
                    if exc.newer is None:
                        raise
                    parts = exc.newer
                    view = self.resolver(parts, [0])[2]
            except DecodeError:  # the ring wrapped before this reference was read, and nothing newer
                self.stale += 1
                continue
            del view
            return HDR.unpack(bytes(parts[1]))


class Iceoryx2:
    """iceoryx2 publish-subscribe through its Python bindings: the payload a loaned `Slice[c_uint8]` sample
    (kind and send time in its first 9 bytes, nothing else written), wake-ups through an iceoryx2 event
    service (its listener has no file descriptor for asyncio, so the receiver blocks in `blocking_wait`)."""

    def __init__(self, args: argparse.Namespace, sending: bool) -> None:
        import ctypes
        import signal

        import iceoryx2 as iox

        iox.set_log_level_from_env_or(iox.LogLevel.Error)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a clean exit releases its /dev/shm files
        self.ctypes, self.size = ctypes, max(HDR.size, args.size)
        node = iox.NodeBuilder.new().create(iox.ServiceType.Ipc)
        name = f"bench-{args.port}"  # a fresh service per run
        service = (
            node.service_builder(iox.ServiceName.new(name))
            .publish_subscribe(iox.Slice[ctypes.c_uint8])
            .enable_safe_overflow(True)  # newest wins at a full subscriber buffer, like the HWMs elsewhere
            .subscriber_max_buffer_size(args.hwm)
            .max_publishers(1)
            .max_subscribers(1)
            .open_or_create()
        )
        events = node.service_builder(iox.ServiceName.new(name + "-ev")).event().open_or_create()
        self.node = node
        if sending:
            self.pub = service.publisher_builder().initial_max_slice_len(self.size).create()
            self.notifier = events.notifier_builder().create()
        else:
            self.sub = service.subscriber_builder().create()
            self.listener = events.listener_builder().create()

    async def start(self) -> None:
        pass

    def send(self, kind: int, t_ns: int) -> None:
        sample = self.pub.loan_slice_uninit(self.size)
        self.ctypes.memmove(sample.payload_ptr, HDR.pack(kind, t_ns), HDR.size)
        sample.assume_init().send()
        self.notifier.notify()

    async def recv(self) -> tuple[int, int]:
        while True:
            sample = self.sub.receive()
            if sample is not None:
                return HDR.unpack(self.ctypes.string_at(sample.payload_ptr, HDR.size))
            self.listener.blocking_wait()


class Zenoh:
    """Zenoh peer-to-peer over tcp loopback (no router); one buffer: 9-byte header + payload."""

    def __init__(self, args: argparse.Namespace, sending: bool) -> None:
        import zenoh

        conf = zenoh.Config()
        conf.insert_json5("mode", '"peer"')
        conf.insert_json5("scouting/multicast/enabled", "false")
        ep = f'["tcp/127.0.0.1:{args.port}"]'
        conf.insert_json5("listen/endpoints" if sending else "connect/endpoints", ep)
        if not sending:
            conf.insert_json5("listen/endpoints", "[]")
        self.session = zenoh.open(conf)
        if sending:
            self.pub = self.session.declare_publisher(TOPIC)
            self.buf = bytearray(HDR.size + args.size)
        else:
            self.sub = self.session.declare_subscriber(TOPIC)

    async def start(self) -> None:
        pass

    def send(self, kind: int, t_ns: int) -> None:
        HDR.pack_into(self.buf, 0, kind, t_ns)
        self.pub.put(self.buf)

    async def recv(self) -> tuple[int, int]:
        payload = self.sub.recv().payload.to_bytes()  # the Python API offers no zero-copy view
        return HDR.unpack_from(payload)


class Cyclone:
    """Cyclone DDS (ROS 2's default middleware) on loopback: reliable, keep-last history."""

    def __init__(self, args: argparse.Namespace, sending: bool) -> None:
        from dataclasses import dataclass

        from cyclonedds.domain import DomainParticipant
        from cyclonedds.idl import IdlStruct
        from cyclonedds.idl.types import array, int8, int64, uint8
        from cyclonedds.pub import DataWriter
        from cyclonedds.qos import Policy, Qos
        from cyclonedds.sub import DataReader
        from cyclonedds.topic import Topic
        from cyclonedds.util import duration

        name = f"BenchSample{args.size}"  # array[uint8, N] takes the fast bytes path of the serializer
        annotations = {"kind": int8, "t": int64, "data": array[uint8, args.size]}
        self.Sample = dataclass(type(name, (IdlStruct,), {"__annotations__": annotations}, typename=name))
        dp = DomainParticipant(args.domain)
        topic = Topic(dp, "bench", self.Sample)
        qos = Qos(Policy.Reliability.Reliable(duration(seconds=1)), Policy.History.KeepLast(args.hwm))
        self.duration = duration
        if sending:
            self.writer = DataWriter(dp, topic, qos=qos)
            self.data = bytes(args.size)
        else:
            from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState, WaitSet

            self.reader = DataReader(dp, topic, qos=qos)
            self.waitset = WaitSet(dp)
            self.waitset.attach(ReadCondition(self.reader, SampleState.Any | ViewState.Any | InstanceState.Any))
            self.pending: list[Any] = []

    async def start(self) -> None:
        pass

    def send(self, kind: int, t_ns: int) -> None:
        self.writer.write(self.Sample(kind=kind, t=t_ns, data=self.data))

    async def recv(self) -> tuple[int, int]:
        while not self.pending:
            self.waitset.wait(self.duration(seconds=1))  # blocks until samples are available
            self.pending = list(self.reader.take(N=64))
        s = self.pending.pop(0)
        return s.kind, s.t


class Dora:
    """A dora-rs dataflow (sender -> receiver nodes, started by `dora run`): Arrow payload, kind and send
    time in the metadata. dora moves payloads above 4 KB through shared memory."""

    def __init__(self, args: argparse.Namespace, sending: bool) -> None:
        from dora import Node

        self.node = Node()
        if sending:
            import pyarrow as pa

            self.data = pa.array(np.zeros(args.size, np.uint8))  # wraps the numpy buffer, no copy

    async def start(self) -> None:
        pass

    def send(self, kind: int, t_ns: int) -> None:
        self.node.send_output("data", self.data, {"k": kind, "t": t_ns})

    async def recv(self) -> tuple[int, int]:
        while True:
            event = self.node.next()
            if event is None or event["type"] == "STOP":
                raise EOFError("dora dataflow stopped")
            if event["type"] == "INPUT":
                return event["metadata"]["k"], event["metadata"]["t"]


TRANSPORTS = {
    "pyzmq-raw": PyzmqRaw,
    "pyzmq-direct": PyzmqRaw,
    "pyzmq-zmq_proxy": PyzmqRaw,
    "bus": TypedBus,
    "bus-shm": TypedBusShm,
    "bus-shm-copy": TypedBusShmCopy,
    "shm-ring": ShmRingDirect,
    "iceoryx2": Iceoryx2,
    "zenoh": Zenoh,
    "cyclonedds": Cyclone,
    "dora": Dora,
}


# -- talking to benchmarks/bus/bench.py: stdin/stdout, or files in the runtime dir where dora owns stdin/stdout ----


def _wait_for_go(args: argparse.Namespace) -> threading.Event:
    go = threading.Event()
    if args.transport == "dora":
        flag = os.path.join(args.runtime_dir, "go")

        def poll() -> None:
            while not os.path.exists(flag):
                time.sleep(0.005)
            go.set()

        threading.Thread(target=poll, daemon=True).start()
    else:
        threading.Thread(target=lambda: (sys.stdin.readline(), go.set()), daemon=True).start()
    return go


def _say(args: argparse.Namespace, name: str, line: str) -> None:
    """Tell the parent: a line on stdout, or (dora) a file written then renamed, so it appears whole."""
    if args.transport == "dora":
        tmp = os.path.join(args.runtime_dir, f".{name}")
        with open(tmp, "w") as f:
            f.write(line + "\n")
        os.replace(tmp, os.path.join(args.runtime_dir, name))
    else:
        print(line, flush=True)


def _write_json(path: str, obj: dict) -> None:
    with open(path, "w") as f:
        json.dump(obj, f)


# -- the two roles --------------------------------------------------------------------------------------


async def send(args: argparse.Namespace) -> None:
    t = TRANSPORTS[args.transport](args, sending=True)
    await t.start()
    go = _wait_for_go(args)
    while not go.is_set():
        t.send(WARM, time.monotonic_ns())
        await asyncio.sleep(0.005)
    if args.mode == "lat":
        start = time.monotonic()
        for i in range(args.count):
            t.send(MEASURE, time.monotonic_ns())
            await asyncio.sleep(max(0.0, start + (i + 1) * args.interval - time.monotonic()))  # pacing
    else:
        end = time.monotonic() + args.seconds
        cpu_start = time.process_time()
        i = 0
        while True:
            t.send(MEASURE, time.monotonic_ns())
            i += 1
            if i % 64 == 0:
                if time.monotonic() >= end:
                    break
                await asyncio.sleep(0)  # lets a bus publisher's socket housekeeping run
        if args.stages:  # the parent reads this beside the receiver's result (benchmarks.bus.costs)
            cpu = {"sent": i, "cpu_us_per_msg": (time.process_time() - cpu_start) * 1e6 / i}
            _write_json(os.path.join(args.runtime_dir, "sender.json"), cpu)
    for _ in range(50 if args.transport == "dora" else 1 << 62):  # dora: exit (1 s) so `dora run` ends
        t.send(END, time.monotonic_ns())
        await asyncio.sleep(0.02)


async def recv(args: argparse.Namespace) -> None:
    t = TRANSPORTS[args.transport](args, sending=False)
    await t.start()
    stages = t.watch_stages() if args.stages and args.mode == "lat" and hasattr(t, "watch_stages") else None
    cpu_start = None
    latencies: list[int] = []
    first = last = None
    warm_said = False
    while True:
        kind, t_send = await t.recv()
        now = time.monotonic_ns()
        if kind == WARM:
            if not warm_said:
                _say(args, "warm", "warm")
                warm_said = True
            continue
        if kind == END:
            break
        if cpu_start is None:
            cpu_start = time.process_time()
        latencies.append(now - t_send)
        if stages is not None:
            stages.take(t_send, now)
        first = now if first is None else first
        last = now
    n = len(latencies)
    lat = np.array(latencies, dtype=np.float64) / 1e3
    span = (last - first) / 1e9 if n > 1 else 0.0
    out = {
        "received": n,
        "p50_us": float(np.percentile(lat, 50)) if n else None,
        "p99_us": float(np.percentile(lat, 99)) if n else None,
        "msgs_per_s": (n - 1) / span if span > 0 else None,
    }
    if args.stages and n > 1:
        out["cpu_us_per_msg"] = (time.process_time() - cpu_start) * 1e6 / (n - 1)
    if stages is not None:
        out["stages_us"] = stages.medians_us()
        out["stage_samples"] = len(stages.samples["handoff"])
    if hasattr(t, "counters"):
        out["counters"] = t.counters()
    _say(args, "result", json.dumps(out))
    os._exit(0)  # some transports' background threads delay a normal exit


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["send", "recv"])
    p.add_argument("--transport", choices=sorted(TRANSPORTS), required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--mode", choices=["lat", "thr"], required=True)
    p.add_argument("--count", type=int, default=200, help="lat: measured messages")
    p.add_argument("--interval", type=float, default=0.002, help="lat: seconds between messages")
    p.add_argument("--seconds", type=float, default=1.0, help="thr: flood duration")
    p.add_argument("--hwm", type=int, default=1000)
    p.add_argument("--runtime-dir", default="/tmp")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--domain", type=int, default=0)
    p.add_argument(
        "--stages", action="store_true", help="CPU per message; bus latency: per-step medians (benchmarks.bus.costs)"
    )
    args = p.parse_args()
    args.direct = args.transport == "pyzmq-direct"
    asyncio.run(send(args) if args.role == "send" else recv(args))


if __name__ == "__main__":
    main()

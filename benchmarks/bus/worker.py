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
        i = 0
        while True:
            t.send(MEASURE, time.monotonic_ns())
            i += 1
            if i % 64 == 0:
                if time.monotonic() >= end:
                    break
                await asyncio.sleep(0)  # lets a bus publisher's socket housekeeping run
    for _ in range(50 if args.transport == "dora" else 1 << 62):  # dora: exit (1 s) so `dora run` ends
        t.send(END, time.monotonic_ns())
        await asyncio.sleep(0.02)


async def recv(args: argparse.Namespace) -> None:
    t = TRANSPORTS[args.transport](args, sending=False)
    await t.start()
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
        latencies.append(now - t_send)
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
    args = p.parse_args()
    args.direct = args.transport == "pyzmq-direct"
    asyncio.run(send(args) if args.role == "send" else recv(args))


if __name__ == "__main__":
    main()

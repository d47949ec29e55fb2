"""A shared-memory peer for tests/bus/test_shm.py, run as its own process (`python -m tests.bus.shm_peer`).

    pub  --bus-json J --topic T --shape H,W,C [--loan]   publishes on each "go N" line from stdin N frames
                                                         (frame i of a stream = frame(i)), then prints
                                                         "done {json shm stats}"; lives until stdin closes
    hold --bus-json J --topic T --count N                receives N frames and holds every one; prints
                                                         "holding {json}" once they all match frame(i)
    forge --topic T [--slots S] [--seal]                 a hostile publisher: makes a segment by hand (no
                                                         seals unless --seal; S slots in its header), prints
                                                         "ref {json reference}"; on "shrink" truncates it
                                                         and prints "shrunk {ok|errno}"; lives until stdin closes
    victim --topic T --ref JSON                          decodes a message whose buffer is that reference and
                                                         prints "mapped" or "reject {reason} {detail}"; on
                                                         "touch" reads every byte of it, prints "touched {sum}
                                                         {peak RSS MiB}"

Frames are deterministic (`frame(i, shape)`), so any process can check one bitwise from its label.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import struct
import sys

import numpy as np

from benchmarks.bus.messages import Blob
from bus.config import BusConfig
from bus.pubsub import Publisher, Subscriber
from tests.support import peak_rss_mb


def frame(i: int, shape: tuple[int, ...]) -> np.ndarray:
    """Frame i of a test stream: random uint8 pixels from seed i."""
    return np.random.default_rng(i).integers(0, 256, size=shape, dtype=np.uint8)


def _line() -> str:
    return sys.stdin.readline()


async def pub(args: argparse.Namespace) -> None:
    config = BusConfig.model_validate_json(args.bus_json)
    shape = tuple(int(x) for x in args.shape.split(","))
    publisher = Publisher(config, src="shm-peer")
    await publisher.ready()
    print("ready", flush=True)
    i = 0
    while line := await asyncio.to_thread(_line):
        for _ in range(int(line.split()[1])):
            data = publisher.loan(args.topic, shape) if args.loan and i % 2 else None
            if data is not None:
                data[...] = frame(i, shape)
            else:
                data = frame(i, shape)
            publisher.publish_nowait(args.topic, Blob(label=str(i), data=data))
            i += 1
            await asyncio.sleep(0.002)  # under the publisher's HWM
        print("done", json.dumps(publisher.shm_stats), flush=True)
    publisher.close()


async def hold(args: argparse.Namespace) -> None:
    config = BusConfig.model_validate_json(args.bus_json)
    held = []
    async with Subscriber(config, [args.topic], policy="reliable", name="holder") as sub:
        print("ready", flush=True)
        while len(held) < args.count:
            held.append((await sub.recv()).msg)
        ok = all(np.array_equal(m.data, frame(int(m.label), m.data.shape)) for m in held)
        print("holding", json.dumps({"n": len(held), "ok": ok}), flush=True)
        await asyncio.to_thread(_line)  # until the test kills us (or closes stdin)


def forge(args: argparse.Namespace) -> None:
    """A segment with our magic and layout, one slot holding a generation-1 frame of 4 KiB, and a reference
    to it: everything a subscriber checks holds, but for what `--slots` and the seals say."""
    from bus import shm

    stride = shm.DATA_OFFSET + shm.PAGE
    flags = os.MFD_CLOEXEC | (os.MFD_ALLOW_SEALING if args.seal else 0)
    fd = os.memfd_create(shm.MEMFD_PREFIX + args.topic, flags)
    size = shm.HEADER_BYTES + args.slots * stride
    os.ftruncate(fd, size)  # sparse: a 300,000-slot header costs nothing here
    nonce = 12345
    os.pwrite(fd, shm._HDR.pack(shm.MAGIC, nonce, os.getpid(), args.slots, 1, 0, stride, shm.HEADER_BYTES), 0)
    slot0 = shm.HEADER_BYTES
    os.pwrite(fd, struct.pack("<QQI", 1, 4096, 0), slot0)
    if args.seal:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, shm.SEALS)
    ref = {"seg": nonce, "pid": os.getpid(), "fd": fd, "slot": 0, "gen": 1, "off": slot0 + shm.DATA_OFFSET, "len": 4096}
    print("ref", json.dumps(ref), flush=True)
    while line := _line():
        if line.startswith("shrink"):
            try:
                os.ftruncate(fd, 4096)
                print("shrunk ok", flush=True)
            except OSError as exc:
                print("shrunk", exc.errno, flush=True)


def victim(args: argparse.Namespace) -> None:
    import msgpack

    from bus import shm
    from bus.codec import DecodeError, decode, encode

    ref = json.loads(args.ref)
    placed = {0: msgpack.packb(ref)}
    parts = encode(args.topic, Blob(label="0", data=np.zeros(ref["len"], np.uint8)), seq=0, src="v", t_ns=0,
                   place=lambda _buffers: placed)  # fmt: skip
    msg = None
    try:
        msg = decode(parts, resolve=shm.resolve).msg
        print("mapped", flush=True)
    except DecodeError as exc:
        print("reject", exc.reason, exc.detail, flush=True)
    while line := _line():
        if line.startswith("touch"):
            total = int(np.asarray(msg.data, np.uint64).sum()) if msg is not None else -1
            peak = peak_rss_mb()
            print("touched", total, round(peak, 1), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["pub", "hold", "forge", "victim"])
    p.add_argument("--bus-json", default="")
    p.add_argument("--topic", required=True)
    p.add_argument("--shape", default="256,256,3")
    p.add_argument("--loan", action="store_true")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--seal", action="store_true")
    p.add_argument("--ref", default="{}")
    args = p.parse_args()
    if args.role in ("forge", "victim"):
        return forge(args) if args.role == "forge" else victim(args)
    asyncio.run(pub(args) if args.role == "pub" else hold(args))


if __name__ == "__main__":
    main()

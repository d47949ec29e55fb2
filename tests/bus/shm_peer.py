"""A shared-memory peer for tests/bus/test_shm.py, run as its own process (`python -m tests.bus.shm_peer`).

    pub  --bus-json J --topic T --shape H,W,C [--loan]   publishes on each "go N" line from stdin N frames
                                                         (frame i of a stream = frame(i)), then prints
                                                         "done {json shm stats}"; lives until stdin closes
    hold --bus-json J --topic T --count N                receives N frames and holds every one; prints
                                                         "holding {json}" once they all match frame(i)

Frames are deterministic (`frame(i, shape)`), so any process can check one bitwise from its label.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import numpy as np

from benchmarks.bus.messages import Blob
from bus.config import BusConfig
from bus.pubsub import Publisher, Subscriber


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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["pub", "hold"])
    p.add_argument("--bus-json", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--shape", default="256,256,3")
    p.add_argument("--loan", action="store_true")
    p.add_argument("--count", type=int, default=1)
    args = p.parse_args()
    asyncio.run(pub(args) if args.role == "pub" else hold(args))


if __name__ == "__main__":
    main()

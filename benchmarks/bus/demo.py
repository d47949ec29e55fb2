"""The bus alone, with no model: a proxy, a synthetic talker and a printing listener, each its own process.

    python -m benchmarks.bus.demo proxy    --bus-json '{...}'             # the proxy (as `perception bus`)
    python -m benchmarks.bus.demo talker   --bus-json '{...}' [--rate HZ] [--count N]
    python -m benchmarks.bus.demo listener --bus-json '{...}' [--topics T ...] [--count N] [--json]

The talker publishes `Text` on demo/text, a 48x64 RGB `Blob` on frames/demo and a `Heartbeat` once a
second. The bus benchmark starts its proxy this way; the multi-process bus tests (tests/bus,
tests/test_cli_bus.py) use all three roles; by hand it is a bus to try `perception topics|echo|hz` on
in a second, without the pipeline's model.

Children exit on SIGTERM and also when their parent process disappears, so nothing is left orphaned.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import numpy as np

from benchmarks.bus.messages import Blob, Text
from bus.config import BusConfig
from bus.logs import configure_logging, get_logger
from bus.message import Heartbeat, summarise
from bus.proxy import run_proxy
from bus.pubsub import Publisher, Subscriber
from bus.runtime import run_until_stopped

log = get_logger("benchmarks.bus.demo")


async def talk(config: BusConfig, *, rate_hz: float, count: int | None, src: str | None, frames: bool) -> None:
    """Publish Text on demo/text (and a small synthetic frame on frames/demo) at `rate_hz`."""
    pub = Publisher(config, src=src or "demo-talker")
    await pub.ready()
    rng = np.random.default_rng(0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    i = 0
    try:
        while count is None or i < count:
            await pub.publish("demo/text", Text(text=f"hello {i}"))
            if frames:
                frame = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
                await pub.publish("frames/demo", Blob(label="synthetic", data=frame))
            if i % max(1, int(rate_hz)) == 0:
                await pub.publish("stats/demo-talker", Heartbeat(node="demo-talker", uptime_s=loop.time() - start))
            i += 1
            # pacing to a schedule (not a handshake): the next tick in absolute time
            await asyncio.sleep(max(0.0, start + i / rate_hz - loop.time()))
    finally:
        pub.close(linger_ms=1000)


async def listen(config: BusConfig, *, topics: list[str], count: int | None, as_json: bool) -> None:
    """Print every message received (one line each) until `count` messages or forever."""
    async with Subscriber(config, topics, name="demo-listener") as sub:
        if as_json:
            print("ready", flush=True)
        n = 0
        async for env in sub:
            if as_json:
                line = {"topic": env.topic, "type": env.type, "seq": env.seq, "src": env.src, "msg": summarise(env.msg)}
                print(json.dumps(line, default=str), flush=True)
            else:
                print(str(env), flush=True)
            n += 1
            if count is not None and n >= count:
                break


async def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:  # noqa: ASYNC110  no event tells a child its parent died: poll
        await asyncio.sleep(0.5)
    log.warning("parent process gone, exiting")


async def _main(args: argparse.Namespace) -> None:
    config = BusConfig.model_validate_json(args.bus_json) if args.bus_json else BusConfig()
    if args.role == "proxy":
        job = run_proxy(config, duration=args.duration)
    elif args.role == "talker":
        job = talk(config, rate_hz=args.rate, count=args.count, src=args.src, frames=not args.no_frames)
    else:
        job = listen(config, topics=args.topics or ["demo/", "frames/demo"], count=args.count, as_json=args.json)
    watcher = asyncio.create_task(_watch_parent(os.getppid()))
    main = asyncio.ensure_future(job)
    try:
        await asyncio.wait({main, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (main, watcher):
            task.cancel()
        await asyncio.gather(main, watcher, return_exceptions=True)
    if main.done() and not main.cancelled() and main.exception():
        raise main.exception()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bus.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("role", choices=["proxy", "talker", "listener"])
    p.add_argument("--bus-json", default=None, help="BusConfig as JSON (default: the default config)")
    p.add_argument("--rate", type=float, default=2.0, help="talker: messages per second")
    p.add_argument("--count", type=int, default=None, help="stop after N messages")
    p.add_argument("--src", default=None, help="talker: publisher id")
    p.add_argument("--no-frames", action="store_true", help="talker: text only")
    p.add_argument("--topics", nargs="*", default=None, help="listener: topic prefixes")
    p.add_argument("--json", action="store_true", help="listener: JSON lines (and a 'ready' line)")
    p.add_argument("--duration", type=float, default=None, help="proxy: stop after S seconds")
    args = p.parse_args(argv)
    configure_logging()
    try:
        asyncio.run(run_until_stopped(lambda: _main(args)))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

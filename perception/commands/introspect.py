"""`perception topics | echo TOPIC | hz TOPIC`: look at a live bus, like `ros2 topic`.

All three subscribe through the proxy like any node; rates come from local receive times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import deque

from bus.config import BusConfig, where_looked
from bus.logs import RateLimited
from bus.message import summarise
from bus.pubsub import BusNotReady, Subscriber
from bus.runtime import run_until_stopped
from perception.config import load_config
from perception.plugins import load_message_types


def _bus(args: argparse.Namespace) -> BusConfig:
    load_message_types()  # echo decodes captions, events and alerts (not "unknown_type")
    return load_config(args.config).bus


def _run(main, duration: float | None, connected: list | None = None, bus: BusConfig | None = None) -> int:
    """Run `main` for `duration` s; 1 with one line on stderr when no proxy answered: `main` appends to
    `connected` once its subscriber is ready, so a run that ended first (a short --duration) says so too
    rather than printing nothing and exiting 0."""
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        asyncio.run(run_until_stopped(main, duration))
    except BusNotReady as exc:
        where = f"; {where_looked(bus.endpoint('sub'))}" if bus is not None else ""
        print(f"perception {command}: no pipeline answers: {exc}{where}", file=sys.stderr)
        return 1
    if connected is not None and not connected and bus is not None:
        print(
            f"perception {command}: no pipeline answers: no proxy answered on {bus.endpoint('sub')} "
            f"within {duration:g}s; {where_looked(bus.endpoint('sub'))}",
            file=sys.stderr,
        )
        return 1
    return 0


# -- topics ------------------------------------------------------------------------------------------


def add_topics_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=2.0, help="listen this long (s)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")


MAX_TOPICS = 10_000  # rows kept by `topics`: topic and src names are whatever publishers invent
MAX_PUBLISHERS = 32  # per row


def run_topics(args: argparse.Namespace) -> int:
    seen: dict[str, dict] = {}
    omitted = {"messages": 0}  # on topics beyond MAX_TOPICS
    started = time.monotonic()
    bus = _bus(args)
    connected: list[bool] = []

    async def main() -> None:
        async with Subscriber(bus, [""], raw=True, policy="reliable", name="topics") as sub:
            connected.append(True)
            async for raw in sub:
                h = raw.header
                row = seen.get(h.topic)
                if row is None:
                    if len(seen) >= MAX_TOPICS:
                        omitted["messages"] += 1
                        continue
                    row = seen[h.topic] = {"type": h.type, "count": 0, "bytes": 0, "publishers": set()}
                row["count"] += 1
                row["bytes"] += sum(len(p.buffer) for p in raw.parts)
                if len(row["publishers"]) < MAX_PUBLISHERS:
                    row["publishers"].add(h.src)

    code = _run(main, args.duration, connected, bus)
    if code:
        return code
    window = max(time.monotonic() - started, 1e-9)
    rows = [
        {
            "topic": t,
            "type": r["type"],
            "rate_hz": round(r["count"] / window, 2),
            "count": r["count"],
            "mb_per_s": round(r["bytes"] / window / 1e6, 3),
            "publishers": sorted(r["publishers"]),
        }
        for t, r in sorted(seen.items())
    ]
    if args.json:
        print(json.dumps({"window_s": round(window, 3), "topics": rows, "omitted_messages": omitted["messages"]}))
    elif code == 0:
        print(f"{'TOPIC':<28} {'TYPE':<16} {'RATE Hz':>9} {'MB/s':>8}  PUBLISHERS")
        for r in rows:
            print(
                f"{r['topic']:<28} {r['type']:<16} {r['rate_hz']:>9} {r['mb_per_s']:>8}  {', '.join(r['publishers'])}"
            )
    return code


# -- echo --------------------------------------------------------------------------------------------


def add_echo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("topic", help="topic or topic prefix, e.g. captions/ or events/cam0")
    p.add_argument("-n", "--count", type=int, default=None, help="exit after N messages")
    p.add_argument("--duration", type=float, default=None, help="exit after S seconds")


def echo_line(env) -> str:
    """One JSON line; `summarise` cuts arrays, long strings and nesting, so the line is bounded too."""
    line = {
        "topic": env.topic,
        "type": env.type,
        "v": env.v,
        "seq": env.seq,
        "src": env.src,
        "t": env.t,
        "msg": summarise(env.msg),
    }
    return json.dumps(line, default=str)


def run_echo(args: argparse.Namespace) -> int:
    unprintable = RateLimited(1.0)
    bus = _bus(args)
    connected: list[bool] = []

    async def main() -> None:
        async with Subscriber(bus, [args.topic], policy="reliable", name="echo") as sub:
            connected.append(True)
            n = 0
            async for env in sub:
                try:
                    text = echo_line(env)
                except Exception as exc:  # whatever a peer sent, one message never ends the echo
                    if unprintable.should_log(env.topic) is not None:
                        print(
                            f"perception echo: cannot print {env.topic} seq={env.seq} from {env.src!r}: "
                            f"{type(exc).__name__}: {str(exc)[:200]}",
                            file=sys.stderr,
                            flush=True,
                        )
                    continue
                print(text, flush=True)
                n += 1
                if args.count is not None and n >= args.count:
                    return

    return _run(main, args.duration, connected, bus)


# -- hz ----------------------------------------------------------------------------------------------


def add_hz_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("topic", help="topic or topic prefix")
    p.add_argument("--window", type=int, default=100, help="periods kept for the statistics")
    p.add_argument("--duration", type=float, default=None, help="exit after S seconds")
    p.add_argument("--json", action="store_true", help="JSON lines instead of text")


def period_stats(times_ns: deque[int]) -> dict[str, float] | None:
    """Rate and period min/max/std over receive times (ns, monotonic); None with fewer than 2 samples."""
    if len(times_ns) < 2:
        return None
    periods = [(b - a) / 1e9 for a, b in zip(times_ns, list(times_ns)[1:])]
    mean = sum(periods) / len(periods)
    return {
        "rate_hz": 1.0 / mean if mean > 0 else float("inf"),
        "min_s": min(periods),
        "max_s": max(periods),
        "std_s": statistics.pstdev(periods),
        "window": len(periods),
    }


def run_hz(args: argparse.Namespace) -> int:
    times: deque[int] = deque(maxlen=args.window + 1)

    def report() -> None:
        s = period_stats(times)
        if s is None:
            print(json.dumps({"topic": args.topic, "rate_hz": 0.0}) if args.json else "no messages yet", flush=True)
        elif args.json:
            print(json.dumps({"topic": args.topic, **{k: round(v, 6) for k, v in s.items()}}), flush=True)
        else:
            print(
                f"average rate: {s['rate_hz']:.3f} Hz  min: {s['min_s']:.4f}s  max: {s['max_s']:.4f}s  "
                f"std dev: {s['std_s']:.5f}s  window: {s['window']}",
                flush=True,
            )

    bus = _bus(args)
    connected: list[bool] = []

    async def main() -> None:
        async with Subscriber(bus, [args.topic], raw=True, policy="reliable", name="hz") as sub:
            connected.append(True)

            async def collect() -> None:
                async for raw in sub:
                    if raw.topic.startswith(args.topic):
                        times.append(time.monotonic_ns())

            collector = asyncio.create_task(collect())
            try:
                while True:
                    await asyncio.sleep(1.0)
                    report()
            finally:
                collector.cancel()

    return _run(main, args.duration, connected, bus)

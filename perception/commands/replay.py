"""`perception replay IN.mcap [--rate R] [--loop] [--topics PREFIX...] [--start S] [--paused]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from bus.mcapfile import RecordingError, check_intact
from bus.replay import Replayer
from bus.runtime import run_until_stopped
from perception.config import ConfigError, load_config
from perception.plugins import load_message_types


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="MCAP file written by `perception record`")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor (2 = twice as fast; 0 = as fast as possible)")
    p.add_argument("--loop", action="store_true", help="start again at the end, until Ctrl-C")
    p.add_argument("--topics", nargs="+", default=None, metavar="PREFIX", help="only these topic prefixes")
    p.add_argument("--start", type=float, default=0.0, help="skip the first S seconds of the recording")
    p.add_argument(
        "--paused",
        action="store_true",
        help="wait for Enter (or SIGUSR1) before sending; SIGUSR1 toggles pause while running",
    )
    p.add_argument(
        "--wait-for",
        nargs="+",
        default=[],
        metavar="PREFIX",
        help="wait until a message is seen on each prefix (e.g. stats/encoder) before sending",
    )
    p.add_argument(
        "--restamp",
        action="store_true",
        help="move every *_ns time (capture times, spans) to the replay's clock, so latencies mean something",
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        check_intact(args.input)  # every chunk's CRC, before anything is published
        replayer = Replayer(
            config.bus,
            args.input,
            rate=args.rate,
            loop=args.loop,
            topics=args.topics,
            start_s=args.start,
            paused=args.paused,
            wait_for=args.wait_for,
            restamp=args.restamp,
        )
        if args.restamp:
            load_message_types()  # restamping decodes: know every type the recording may hold
    except (ConfigError, RecordingError, ValueError) as exc:
        print(f"perception replay: {exc}", file=sys.stderr)
        return 2

    async def job():
        if args.paused:
            print("paused: press Enter (or send SIGUSR1) to start", flush=True)
            loop = asyncio.get_running_loop()

            def on_enter() -> None:  # one line (or EOF) resumes; the reader is removed so EOF cannot spin
                loop.remove_reader(sys.stdin.fileno())
                sys.stdin.readline()
                replayer.resume()

            try:
                loop.add_reader(sys.stdin.fileno(), on_enter)
            except (OSError, ValueError, NotImplementedError):
                pass  # no pollable stdin (a regular file, /dev/null): SIGUSR1 only
        return await replayer.run()

    try:
        stats = asyncio.run(run_until_stopped(job, signals={signal.SIGUSR1: replayer.toggle}))
    except RecordingError as exc:  # a chunk past the footer's check: damaged, or over bus/reader_limits.py
        print(f"perception replay: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # BusNotReady, --wait-for timeout
        print(f"perception replay: {exc}", file=sys.stderr)
        return 1
    stats = stats or replayer.stats
    print(
        json.dumps(
            {
                "messages": stats.messages,
                "bytes": stats.bytes,
                "loops": stats.loops,
                "wall_s": round(stats.wall_s, 4),
                "max_lag_ms": round(stats.max_lag_ms, 3),
                **({"not_restamped": stats.not_restamped} if args.restamp else {}),
            }
        ),
        flush=True,
    )
    return 0

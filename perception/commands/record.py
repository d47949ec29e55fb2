"""`perception record OUT.mcap [--topics PREFIX...] [--duration S] [--force]`, and `--recover BROKEN FIXED`.

An existing OUT (or FIXED) is refused with exit code 2 unless `--force`: a recording is never truncated
by a repeated command line.

See docs/recording.md for the file layout and the crash-safety bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from bus.mcapfile import COMPRESSIONS, RecordingError, recover
from bus.record import DEFAULT_MAX_QUEUE_BYTES, DEFAULT_MAX_TOPICS, Recorder
from bus.runtime import run_until_stopped
from perception.config import ConfigError, load_config
from perception.sessions.metadata import session_metadata


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", nargs="?", help="MCAP file to write")
    p.add_argument("--topics", nargs="+", default=[""], metavar="PREFIX", help="topic prefixes (default: all)")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument(
        "--flush-interval",
        type=float,
        default=0.5,
        help="seconds between chunk flushes: the crash-safety bound (default 0.5)",
    )
    p.add_argument("--chunk-size", type=int, default=1024 * 1024, help="bytes per MCAP chunk before it is closed early")
    p.add_argument("--compression", choices=sorted(COMPRESSIONS), default="zstd")
    p.add_argument(
        "--max-queue-mb",
        type=float,
        default=DEFAULT_MAX_QUEUE_BYTES / 2**20,
        help="MiB queued for the writer before messages are dropped (and counted) (default 256)",
    )
    p.add_argument(
        "--max-topics",
        type=int,
        default=DEFAULT_MAX_TOPICS,
        help="distinct topics recorded; messages on further ones are dropped and counted (default 1024)",
    )
    p.add_argument("--force", action="store_true", help="replace OUT (or FIXED) if it exists")
    p.add_argument(
        "--recover",
        nargs=2,
        metavar=("BROKEN", "FIXED"),
        help="rewrite what is readable in BROKEN (e.g. after a crash) into a complete FIXED file",
    )


def run(args: argparse.Namespace) -> int:
    try:
        target = args.recover[1] if args.recover else args.out
        if target and Path(target).exists() and not args.force:
            print(
                f"perception record: {target} exists; refusing to overwrite it (pass --force to replace it)",
                file=sys.stderr,
            )
            return 2
        if args.recover:
            res = recover(*args.recover, compression=args.compression)
            print(
                json.dumps(
                    {
                        "recovered": args.recover[1],
                        "messages": res.messages,
                        "channels": res.channels,
                        "input_complete": res.complete,
                        "damage": res.damage,
                        "gaps": res.gaps,
                    }
                )
            )
            return 0
        if not args.out:
            print("perception record: OUT.mcap is required (or --recover BROKEN FIXED)", file=sys.stderr)
            return 2
        if args.duration is not None and args.duration <= 0:
            print(f"perception record: --duration must be > 0, got {args.duration}", file=sys.stderr)
            return 2
        config = load_config(args.config)
        recorder = Recorder(
            config.bus,
            args.out,
            topics=args.topics,
            session=session_metadata(config),
            flush_interval_s=args.flush_interval,
            chunk_size=args.chunk_size,
            compression=args.compression,
            max_queue_bytes=int(args.max_queue_mb * 2**20),
            max_topics=args.max_topics,
            overwrite=args.force,
        )
    except (ConfigError, RecordingError, ValueError, OSError) as exc:
        print(f"perception record: {exc}", file=sys.stderr)
        return 2

    started = False  # the bus answered and recording began

    async def job() -> None:
        nonlocal started
        task = asyncio.ensure_future(recorder.run(duration=args.duration))
        ready = asyncio.ensure_future(recorder.ready.wait())
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            started = True
            print(f"recording {args.out} topics={args.topics}", flush=True)
        else:
            ready.cancel()
        try:
            await task
        except asyncio.CancelledError:
            await asyncio.gather(task, return_exceptions=True)
            raise

    try:
        asyncio.run(run_until_stopped(job))
    except Exception as exc:  # BusNotReady, writer failures: say what failed, keep the file
        if not started and recorder.stats.messages == 0:
            # nothing was recorded (no bus answered): leave no empty file behind to refuse the retry
            Path(args.out).unlink(missing_ok=True)
            from bus.config import where_looked

            print(
                f"perception record: {exc}; nothing written; {where_looked(config.bus.endpoint('sub'))}",
                file=sys.stderr,
            )
            return 1
        print(f"perception record: {exc}", file=sys.stderr)
        return 1
    s = recorder.stats
    print(
        json.dumps(
            {
                "file": args.out,
                "messages": s.messages,
                "bytes": s.bytes,
                "by_topic": s.by_topic,
                "gaps": s.gaps,
                "dropped": s.dropped,
                "dropped_bytes": s.dropped_bytes,
                "dropped_topic_limit": s.dropped_topic_limit,
            }
        ),
        flush=True,
    )
    return 0

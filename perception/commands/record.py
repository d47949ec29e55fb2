"""`perception record OUT.mcap [--topics PREFIX...] [--duration S] [--split-size SIZE] [--split-duration S]
[--force]`, and `--recover BROKEN FIXED`.

An existing OUT (or FIXED) is refused with exit code 2 unless `--force`: a recording is never truncated
by a repeated command line. With `--split-size`/`--split-duration` (ros2 bag's --max-bag-size/-duration)
the files are OUT_0.mcap, OUT_1.mcap, ... beside OUT; existing ones are refused likewise, and `--force`
removes them all first (a shorter new run must not leave an old run's later files behind).

See docs/recording.md for the file layout and the crash-safety bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
from pathlib import Path

from bus.mcapfile import COMPRESSIONS, RecordingError, recover
from bus.record import DEFAULT_MAX_QUEUE_BYTES, DEFAULT_MAX_TOPICS, Recorder, split_path, split_paths
from bus.runtime import run_until_stopped
from perception.config import ConfigError, load_config
from perception.sessions.metadata import session_metadata

_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "KIB": 2**10, "M": 10**6, "MB": 10**6, "MIB": 2**20}
_UNITS |= {"G": 10**9, "GB": 10**9, "GIB": 2**30, "T": 10**12, "TB": 10**12, "TIB": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([A-Za-z]*)\s*")


def parse_size(text: str) -> int:
    """`1000000`, `512MB` (10**6), `512MiB` (2**20), `1.5G`: bytes. A ValueError saying the form otherwise."""
    m = _SIZE.fullmatch(text)
    unit = m.group(2).upper() if m else ""
    if m is None or unit not in _UNITS:
        raise ValueError(f"--split-size {text!r}: expected a number of bytes like 1000000, 512MB or 1GiB")
    return int(float(m.group(1)) * _UNITS[unit])


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
    p.add_argument(
        "--split-size",
        default=None,
        metavar="SIZE",
        help="start a new file OUT_<n>.mcap once one holds SIZE bytes (1000000, 512MB, 1GiB; like ros2 bag's "
        "--max-bag-size; a file exceeds it by at most one chunk)",
    )
    p.add_argument(
        "--split-duration",
        type=float,
        default=None,
        metavar="S",
        help="start a new file OUT_<n>.mcap every S seconds of recording (>= 1; like ros2 bag's --max-bag-duration)",
    )
    p.add_argument("--force", action="store_true", help="replace OUT (or FIXED, or OUT's split files) if it exists")
    p.add_argument(
        "--recover",
        nargs=2,
        metavar=("BROKEN", "FIXED"),
        help="rewrite what is readable in BROKEN (e.g. after a crash) into a complete FIXED file",
    )


def run(args: argparse.Namespace) -> int:
    from perception.commands.outputs import output_error

    if args.recover and (rc := output_error("record", args.recover[1], [args.recover[0]], "--recover FIXED")):
        return rc
    if (rc := output_error("record", args.out, [args.config], "OUT")) is not None:
        return rc
    try:
        target = args.recover[1] if args.recover else args.out
        split_size = parse_size(args.split_size) if args.split_size is not None else None
        split = not args.recover and (split_size is not None or args.split_duration is not None)
        if split and args.out and not _clear_split_files(args.out, args.force):
            return 2
        if not split and target and Path(target).exists() and not args.force:
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
                        "skipped_chunks": res.skipped_chunks,
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
            split_size=split_size,
            split_duration_s=args.split_duration,
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
            into = f" into {split_path(args.out, 0).name}, ..." if split else ""
            print(f"recording {args.out}{into} topics={args.topics}", flush=True)
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
            # nothing was recorded: leave no empty file behind to refuse the retry (a read-only disk made none)
            with contextlib.suppress(OSError):
                (split_path(args.out, 0) if split else Path(args.out)).unlink(missing_ok=True)
            if isinstance(exc, OSError) and not isinstance(
                exc, TimeoutError
            ):  # the disk (BusNotReady is a TimeoutError)
                print(f"perception record: {exc}", file=sys.stderr)
                return 1
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
                "files": s.files,
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


def _clear_split_files(out: str, force: bool) -> bool:
    """Refuse (False, said on stderr) when files of a split recording OUT exist, unless `force`: then remove them."""
    existing = split_paths(out)
    if not existing:
        return True
    if not force:
        print(
            f"perception record: {existing[0]} exists ({len(existing)} files of a split recording {out}); "
            "refusing to overwrite them (pass --force to replace them)",
            file=sys.stderr,
        )
        return False
    for path in existing:
        path.unlink()
    print(f"perception record: removed {len(existing)} files of the earlier recording {out} (--force)", file=sys.stderr)
    return True

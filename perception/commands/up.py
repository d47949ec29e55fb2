"""`perception up [CONFIG] [--source SRC] [--duration S] [--json] [--record OUT.mcap]`: launch and supervise
the pipeline.

The proxy and every node (capture, encoder, events, decoder, world) run as child processes from one
validated config (perception/nodes/launcher.py). Captions and events are printed as they arrive, one line
each or JSON lines with --json; logs go to stderr. Ctrl-C / SIGTERM / --duration stop everything.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from perception.config import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config_path", nargs="?", default=None, help="YAML config (same as --config)")
    p.add_argument(
        "--source",
        default=None,
        help="replace the first camera: 'synthetic', a video file or URL (type file), a camera index (type opencv), "
        "BAG.mcap[:/topic] (a rosbag2 bag) or ros2:/topic (a live ROS 2 image topic)",
    )
    p.add_argument(
        "--ros2", action="store_true", help="also publish captions and events to a ROS 2 graph (pipeline.ros2)"
    )
    p.add_argument("--duration", type=float, default=None, help="stop S seconds after the pipeline is up")
    p.add_argument("--json", action="store_true", help="print captions and events as JSON lines")
    p.add_argument(
        "--record",
        metavar="OUT.mcap",
        default=None,
        help="record the session from its first frame to its last caption (input for `perception test`)",
    )
    p.add_argument("--record-topics", nargs="+", default=[""], metavar="PREFIX", help="topics to record (default: all)")


def probe_sources(config) -> bool:
    """Open every camera before anything starts (decode one frame): False, after one line per camera that
    can never work, when one cannot; a camera that may come back (a stream down, a camera busy) is said
    once and left to the capture node's retries."""
    from perception.nodes.sources import probe_cameras

    ok = True
    for result in probe_cameras(config.pipeline.cameras):
        cam = result.camera
        if result.error is None:
            continue
        if result.permanent:
            ok = False
            print(f"perception up: camera {cam.name} ({cam.describe()}) cannot work: {result.error}", file=sys.stderr)
        else:
            print(
                f"perception up: camera {cam.name} ({cam.describe()}) is not available yet: {result.error}; "
                f"starting anyway and retrying it every {cam.retry_initial_s:g}-{cam.retry_max_s:g} s",
                file=sys.stderr,
            )
    return ok


def run(args: argparse.Namespace) -> int:
    from perception.commands.outputs import output_error
    from perception.nodes.launcher import Launcher
    from perception.nodes.preflight import prepare_config

    if (rc := output_error("up", args.record, [args.config_path or args.config, args.source], "--record")) is not None:
        return rc
    try:
        config = prepare_config(args.config_path or args.config, source=args.source, ros2=args.ros2)
    except ConfigError as exc:
        print(f"perception up: {exc}", file=sys.stderr)
        return 2
    if not probe_sources(config):
        return 2
    if args.record is not None and Path(args.record).exists():
        print(f"perception up: {args.record} exists; refusing to overwrite a recording", file=sys.stderr)
        return 2
    launcher = Launcher(
        config, json_lines=args.json, log_level=args.log_level, record=args.record, record_topics=args.record_topics
    )
    return asyncio.run(launcher.run(duration=args.duration))

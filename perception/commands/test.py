"""`perception test SESSION.mcap... [--config CONFIG] [--against BASELINE.mcap] [--json OUT] [thresholds]`
`perception test ROBOT_BAG.mcap --topic /camera/image_raw --config CONFIG [--against BASELINE.mcap]`

Runs each recorded session's frames through a pipeline offline (perception/sessions/offline.py: in one
process, in lockstep, the same on any machine), records what it perceived to SESSION.test.mcap beside the
input, and compares that with what the recording itself perceived (or with --against, a baseline run's
file): segment boundaries, captions, watch crossings, embedding drift, latencies. Without --config the
config stored in the recording is used, so an unchanged pipeline must report zero differences.

A rosbag2 bag (a .mcap written by `ros2 bag record`, or its directory) runs the same way: its image topic
(`--topic`, or the bag's only one) becomes the config's first camera's frames, stamped with the images'
header stamps (perception/ros2/bag_session.py). A bag holds no outputs of ours, so what it compares with
is `--against` (an earlier run's SESSION.test.mcap); without it, everything counts as gained. Without
--config a bag runs through the default config.

Exit status: 0 when no threshold is crossed, 1 when one is (for CI gates), 2 when a session cannot be
run (unreadable file, no frames, a bad config). Without a threshold nothing is gated: the report's last
line says "not gated" and the exit status is 0 whatever differs. docs/testing.md has a CI job that gates on recordings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

HELP = "run recorded sessions through a pipeline offline and diff what it perceives"
CONFIG_HELP = "YAML config to run the sessions with (default: the config stored in each recording)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "sessions", nargs="+", metavar="SESSION.mcap", help="recordings with frames (perception up --record)"
    )
    p.add_argument(
        "--against", metavar="BASELINE.mcap", help="compare with this run's outputs, not the recording's own"
    )
    p.add_argument(
        "--out", metavar="OUT.mcap", help="where this run's outputs go (one session only; default SESSION.test.mcap)"
    )
    p.add_argument("--json", metavar="OUT.json", help="write every comparison as JSON")
    p.add_argument(
        "--topic", metavar="/TOPIC", help="a rosbag2 bag's image topic (default: the bag's only image topic)"
    )
    p.add_argument("--tolerance", type=float, default=0.5, help="seconds within which two boundaries match (0.5)")
    g = p.add_argument_group("thresholds (exit status 1 when one is crossed)")
    g.add_argument("--exact", action="store_true", help="any difference at all")
    g.add_argument("--max-boundary-drift", type=float, metavar="S", help="mean shift of matched boundaries, seconds")
    g.add_argument("--min-boundary-f1", type=float, metavar="F", help="F1 of boundaries matched within --tolerance")
    g.add_argument("--max-caption-changes", type=int, metavar="N", help="captions changed, gained or lost")
    g.add_argument("--max-watch-changes", type=int, metavar="N", help="watch crossings gained or lost")
    g.add_argument("--min-cosine", type=float, metavar="C", help="5th percentile of the per-window embedding cosine")


def output_path(session: Path) -> Path:
    return session.with_name(session.name.removesuffix(".mcap") + ".test.mcap")


def bag_inputs(config, bag: Path, topic: str | None) -> dict:
    """run_offline's `inputs` and `total` for a rosbag2 bag."""
    import math

    from perception.ros2.bag_session import bag_camera, bag_frames, image_count

    camera = bag_camera(config, bag, topic)
    count = image_count(camera)
    enc = config.pipeline.encoder
    every = math.gcd(enc.frame_step, enc.stride_frames) if config.pipeline.capture.send == "encoder" else 1
    if count == 0:
        raise ValueError(f"{bag}: topic {camera.topic or '(image)'} has no messages")
    return {"inputs": bag_frames(config, camera), "total": math.ceil(count / every)}


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from bus.logs import get_logger
    from bus.mcapfile import RecordingError, check_intact
    from perception.commands.outputs import output_error
    from perception.config import ConfigError, load_config, stored_config
    from perception.nodes.preflight import model_problems
    from perception.ros2.bag import BagError, bag_path
    from perception.ros2.bag_info import is_ros_bag
    from perception.sessions.diff import Thresholds, compare
    from perception.sessions.offline import run_offline
    from perception.sessions.perceived import Perceived, read_perceived
    from perception.sessions.report import format_report

    log = get_logger("test")
    sessions = [Path(s) for s in args.sessions]
    if len(sessions) > 1 and (args.against or args.out):
        print("perception test: --against and --out take one session", file=sys.stderr)
        return 2
    thresholds = Thresholds(
        max_boundary_drift_s=args.max_boundary_drift,
        min_boundary_f1=args.min_boundary_f1,
        max_caption_changes=args.max_caption_changes,
        max_watch_changes=args.max_watch_changes,
        min_cosine_p5=args.min_cosine,
        exact=args.exact,
    )
    inputs = [*sessions, args.against, args.config]
    outputs = [(args.out, "--out")] if args.out else [(output_path(s), "the output") for s in sessions]
    for out, flag in (*outputs, (args.json, "--json")):
        if (rc := output_error("test", out, inputs, flag)) is not None:
            return rc
    try:
        configured = load_config(args.config) if args.config else None
        against = read_perceived(args.against) if args.against else None
    except (ConfigError, RecordingError, OSError, ValueError) as exc:
        print(f"perception test: {exc}", file=sys.stderr)
        return 2
    results, failed = [], False
    for session in sessions:
        try:
            bag = is_ros_bag(session)
            if not bag:
                check_intact(session)  # a chunk failing its CRC is refused as `info` flags it, not diffed
            recorded = Perceived(session) if bag else read_perceived(session)
            if configured is not None:
                config = configured
            elif bag:
                config = load_config(None)
            elif recorded.config is not None:
                # the recording's config is data (a teammate's, a customer's): validated like a user's file,
                # and it may name no package to import; the user hears which config runs
                config = stored_config(recorded.config, str(session))
                print(
                    f"perception test: {session}: using the config stored in the recording (pass --config for yours)",
                    file=sys.stderr,
                )
            else:
                raise ConfigError(f"{session} stores no config (not recorded by perception); pass --config")
            if problems := model_problems(config):  # found by the encoder node instead, a stuck offline run
                raise ConfigError("; ".join(f"{where}: {msg}" for where, msg in problems))
            out = Path(args.out) if args.out else output_path(bag_path(session) if bag else session)
            last = [0]

            def progress(done: int, total: int, last=last, session=session) -> None:
                if done == total or done - last[0] >= max(total // 10, 1):
                    last[0] = done
                    log.info("feeding the recording", session=str(session), done=done, total=total)

            feed = bag_inputs(config, session, args.topic) if bag else {}
            run_ = asyncio.run(run_offline(session, config, out, progress=progress, **feed))
            baseline = against if against is not None else recorded
            if not baseline.embeddings and not baseline.segments and not baseline.captions:
                log.warning(
                    "the baseline has no outputs (a frames-only recording?): pass --against",
                    baseline=str(baseline.path),
                )
            diff = compare(str(session), baseline, read_perceived(out), tolerance_s=args.tolerance)
            diff.run = run_.figures()
        except (ConfigError, RecordingError, BagError, ValidationError, ValueError, OSError, RuntimeError) as exc:
            print(f"perception test: {session}: {exc}", file=sys.stderr)
            return 2
        print(format_report(diff, thresholds), flush=True)
        crossed = diff.crossed(thresholds)
        failed |= bool(crossed)
        results.append({**diff.as_dict(), "crossed": crossed})
    if args.json:
        Path(args.json).write_text(json.dumps({"sessions": results, "failed": failed}, indent=2, default=str))
    return 1 if failed else 0

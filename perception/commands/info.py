"""`perception info IN.mcap [--json]` (also a rosbag2 bag: its topics and types), with `--export foxglove OUT.mcap` (Foxglove's schemas) or `--export-json OUT.mcap`."""

from __future__ import annotations

import argparse
import json
import sys

from bus.mcap_export import export_json
from bus.mcap_info import describe
from bus.mcapfile import RecordingError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="MCAP file, or a rosbag2 bag (.mcap or its directory)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--export-json",
        metavar="OUT.mcap",
        default=None,
        help="also write a Foxglove-viewable copy (json + jsonschema channels) to OUT.mcap",
    )
    p.add_argument(
        "--export",
        nargs=2,
        metavar=("FORMAT", "OUT.mcap"),
        default=None,
        help="also write a copy in FORMAT: foxglove (Foxglove's well-known schemas: CompressedImage, Log, ...; "
        "docs/viewers.md) or json (as --export-json)",
    )


def run(args: argparse.Namespace) -> int:
    from perception.commands.outputs import output_error

    for out, flag in ((args.export_json, "--export-json"), (args.export[1] if args.export else None, "--export")):
        if (rc := output_error("info", out, [args.input], flag)) is not None:
            return rc
    if args.export and args.export[0] not in ("foxglove", "json"):
        print(f"perception info: --export {args.export[0]!r}: the formats are foxglove and json", file=sys.stderr)
        return 2
    from perception.ros2.bag_info import BagError, describe_bag, is_ros_bag, render

    if is_ros_bag(args.input) and not (args.export or args.export_json):
        try:
            bag = describe_bag(args.input)
        except BagError as exc:
            print(f"perception info: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(bag) if args.json else render(bag), flush=True)
        return 0
    try:
        info = describe(args.input)
        print(json.dumps(info.as_dict(), default=str) if args.json else info.render(), flush=True)
        if args.export_json:
            counts = export_json(args.input, args.export_json)
            if not args.json:
                print(
                    f"\nexported {sum(counts.values())} json message(s) on {len(counts)} channel(s) to {args.export_json}"
                )
        if args.export:
            fmt, out = args.export
            if fmt == "json":
                counts = export_json(args.input, out)
                summary = f"{sum(counts.values())} json message(s) on {len(counts)} channel(s)"
            elif fmt == "foxglove":
                from perception.viewers.foxglove_export import export_foxglove

                counts = export_foxglove(args.input, out)
                summary = (
                    f"{counts['decoded']} message(s), {counts['frames_sent']} frame(s) on {counts['topics']} channel(s)"
                )
            if not args.json:
                print(f"\nexported {summary} to {out}")
    except RecordingError as exc:
        print(f"perception info: {exc}", file=sys.stderr)
        return 2
    return 0 if info.complete else 1

"""`perception info IN.mcap [--json]` and `perception info IN.mcap --export-json OUT.mcap` (Foxglove copy)."""

from __future__ import annotations

import argparse
import json
import sys

from bus.mcap_export import export_json
from bus.mcap_info import describe
from bus.mcapfile import RecordingError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="MCAP file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--export-json",
        metavar="OUT.mcap",
        default=None,
        help="also write a Foxglove-viewable copy (json + jsonschema channels) to OUT.mcap",
    )


def run(args: argparse.Namespace) -> int:
    try:
        info = describe(args.input)
        print(json.dumps(info.as_dict(), default=str) if args.json else info.render(), flush=True)
        if args.export_json:
            counts = export_json(args.input, args.export_json)
            if not args.json:
                print(
                    f"\nexported {sum(counts.values())} json message(s) on {len(counts)} channel(s) to {args.export_json}"
                )
    except RecordingError as exc:
        print(f"perception info: {exc}", file=sys.stderr)
        return 2
    return 0 if info.complete else 1

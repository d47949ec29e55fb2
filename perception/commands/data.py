"""`perception data shard MANIFEST OUT_DIR --shard-size N` and `perception data check OUT_DIR`."""

from __future__ import annotations

import argparse
import json
import sys

from perception.data.manifest import ManifestError, VideoDecodeError
from perception.data.shards import ShardError, check_shards, write_shards


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    shard = sub.add_parser("shard", help="write a JSONL manifest as WebDataset tar shards")
    shard.add_argument("manifest", help="JSONL manifest (docs/data.md)")
    shard.add_argument("out_dir", help="folder for shard-NNNNNN.tar and index.json")
    shard.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    check = sub.add_parser("check", help="read every sample of a shard set: counts, unreadable samples listed")
    check.add_argument("out_dir", help="a folder written by `perception data shard`")
    check.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from perception.commands.outputs import output_error

    name = Path(args.manifest).name if args.data_command == "shard" else ""
    if name == "index.json" or name.startswith("shard-"):  # what `shard` writes into OUT_DIR
        if (rc := output_error("data shard", Path(args.out_dir) / name, [args.manifest], "OUT_DIR")) is not None:
            return rc
    try:
        if args.data_command == "shard":
            idx = write_shards(args.manifest, args.out_dir, args.shard_size)
            print(f"wrote {idx.samples} sample(s) in {len(idx.shards)} shard(s) to {args.out_dir}")
            return 0
        rep = check_shards(args.out_dir)
    except (ManifestError, VideoDecodeError, ShardError, ValueError) as exc:
        print(f"perception data {args.data_command}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rep.__dict__ | {"ok": rep.ok}))
    else:
        print(f"{rep.shards} shard(s), {rep.samples} sample(s), {rep.readable} readable")
        for u in rep.unreadable:
            print(f"unreadable {u['shard']}:{u['key']}: {u['error']}")
        for problem in rep.index_problems:
            print(f"index: {problem}")
    return 0 if rep.ok else 1

"""`perception bench bus|model|pipeline`: benchmarks are commands that print figures, never timed tests."""

from __future__ import annotations

import argparse
import importlib

# target -> module with `add_arguments(parser)` and `run(args) -> int`
TARGETS = {
    "bus": "bus.bench",
    "model": "perception.model.bench",
    "pipeline": "perception.nodes.bench",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", choices=sorted(TARGETS), help="what to benchmark")
    p.add_argument("--json", dest="json_out", default=None, help="write results as JSON here")
    p.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    p.add_argument("--transports", nargs="*", default=None, help="bench bus: only these transports")


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(TARGETS[args.target])
    return int(module.run(args) or 0)

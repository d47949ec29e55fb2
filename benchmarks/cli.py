"""`perception bench <target>`: benchmarks are commands that print figures, never timed tests.

Plugged into the `perception` CLI through the `perception.commands` entry point (pyproject.toml), so
perception never imports benchmarks. Each target module has `run(args) -> int`; what each measures, its
command and where its results go: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib

HELP = "run a benchmark"

# target -> module with `run(args) -> int`
TARGETS = {
    "bus": "benchmarks.bus.bench",
    "record": "benchmarks.bus.record",
    "model": "benchmarks.model.bench",
    "pipeline": "benchmarks.pipeline.bench",
    "data": "benchmarks.data.bench",
    "memory": "benchmarks.pipeline.memory",
    "cameras": "benchmarks.cameras.bench",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", choices=sorted(TARGETS), help="what to benchmark")
    p.add_argument("--json", dest="json_out", default=None, help="write results as JSON here")
    p.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    p.add_argument("--transports", nargs="*", default=None, help="bench bus: only these transports")
    p.add_argument("--sizes", nargs="*", type=int, default=None, help="bench bus: only these payload sizes (bytes)")


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(TARGETS[args.target])
    return int(module.run(args) or 0)

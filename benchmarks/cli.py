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
    "cost": "benchmarks.cost.bench",
    "workers": "benchmarks.workers.bench",
    "train": "benchmarks.training.bench",
    "ros2": "benchmarks.ros2.bench",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", choices=sorted(TARGETS), help="what to benchmark")
    p.add_argument("--json", dest="json_out", default=None, help="write results as JSON here")
    p.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    p.add_argument("--transports", nargs="*", default=None, help="bench bus: only these transports")
    p.add_argument("--sizes", nargs="*", type=int, default=None, help="bench bus: only these payload sizes (bytes)")
    p.add_argument("--png", default=None, help="bench bus: write the plot here (default: beside the JSON)")
    p.add_argument("--streams", type=int, default=None, help="bench cost: held-out streams (default 4, --quick 2)")
    p.add_argument(
        "--seconds", type=float, default=None, help="bench cost: seconds per stream (default 60, --quick 20)"
    )
    p.add_argument(
        "--per-service",
        type=int,
        default=None,
        help="bench cost: cameras per service run (default: every stream in one service; 1: a service each)",
    )
    p.add_argument("--cameras", type=int, default=None, help="bench workers: synthetic cameras (default 4)")
    p.add_argument("--fps", type=float, default=None, help="bench workers: each camera's rate (default 60)")
    p.add_argument("--checkpoint", default=None, help="bench cost: VL-JEPA checkpoint (default: the config's model)")
    p.add_argument(
        "--vlm-checkpoint", default=None, help="bench cost: TokenVLM checkpoint (default checkpoints/tiny-vlm)"
    )


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(TARGETS[args.target])
    return int(module.run(args) or 0)

"""Resident memory per node of a live pipeline: `perception bench memory [--config C] [--json OUT]`.

Starts the whole service (`perception up` in-process, the config's cameras), samples every node's
`rss_mb` from its stats heartbeat for the run, and prints the peak per node and the sum. A robot's
computer shares this memory with everything else, so it is a figure to watch per node. Waiting spares
(`supervisor.spares`) publish no heartbeat: their RSS is read from /proc, as `NAME.spare`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import tempfile

import psutil

from perception.config import AppConfig
from perception.nodes.launcher import Launcher
from perception.nodes.preflight import prepare_config


async def peak_rss_mb(config: AppConfig, seconds: float) -> dict[str, float]:
    launcher = Launcher(config, out=io.StringIO())
    task = asyncio.create_task(launcher.run(duration=seconds))
    peak: dict[str, float] = {}
    while not task.done():
        for name, counters in launcher.node_stats.items():
            if "rss_mb" in counters:
                peak[name] = max(peak.get(name, 0.0), counters["rss_mb"])
        for name, proc in list(launcher.spares.items()):
            with contextlib.suppress(psutil.Error):
                mb = round(psutil.Process(proc.pid).memory_info().rss / 1e6, 1)  # as the heartbeats
                peak[f"{name}.spare"] = max(peak.get(f"{name}.spare", 0.0), mb)
        await asyncio.sleep(0.5)
    await task
    return peak


def run(args: argparse.Namespace) -> int:
    config = prepare_config(args.config)
    data = config.model_dump()
    data["bus"]["runtime_dir"] = tempfile.mkdtemp(prefix="bench-memory-")  # never a live pipeline's bus
    seconds = 10.0 if args.quick else 40.0
    peak = asyncio.run(peak_rss_mb(AppConfig.model_validate(data), seconds))
    result = {"seconds": seconds, "peak_rss_mb": dict(sorted(peak.items())), "total_mb": round(sum(peak.values()), 1)}
    print(f"peak RSS per node over {seconds:.0f} s (MB):")
    for name, mb in sorted(peak.items()):
        print(f"  {name:<8} {mb:7.1f}")
    print(f"  {'total':<8} {result['total_mb']:7.1f}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)
    return 0

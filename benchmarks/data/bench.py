"""Throughput of ShapesWorld generation, single process: `perception bench data [--quick] [--json OUT]`
(or `python -m benchmarks.data.bench [--quick] [--json OUT]`).

Prints clips/s (plan + render + tensor, what a DataLoader worker does), stream frames/s (what the
synthetic camera does per frame) and encode/decode rates, as one table in one run. User output, so print.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from perception.data.manifest import ManifestDataset
from perception.data.shapesworld import ShapesWorldClips
from perception.data.stream import ShapesStream
from perception.data.video_io import write_clip_set


def _rate(fn, n: int, repeats: int = 3) -> float:
    """Best of `repeats` timed passes over n calls (the machine is shared: best is least disturbed)."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = max(best, n / (time.perf_counter() - start))
    return best


def run(args: argparse.Namespace) -> int:
    n = 100 if args.quick else 1000
    rows = []
    for frames, size in ((8, 64), (16, 64), (16, 128)):
        ds = ShapesWorldClips(length=n, seed=0, frames=frames, size=size)
        rows.append((f"clips T={frames} {size}px", _rate(ds.__getitem__, n), "clips/s"))
    for size in (64, 224):
        stream = ShapesStream(0, duration_s=120, fps=30, size=size)
        m = min(stream.num_frames, 10 * n)
        rows.append((f"stream frame_at {size}px", _rate(stream.frame_at, m), "frames/s"))
    with tempfile.TemporaryDirectory() as tmp:
        k = n // 10
        start = time.perf_counter()
        manifest = write_clip_set(Path(tmp), k, frames=8, size=64, qa=False)
        rows.append(("encode clips T=8 64px (h264)", k / (time.perf_counter() - start), "clips/s"))
        decoded = ManifestDataset(manifest, frames=8, size=64)
        rows.append(("decode clips T=8 64px (manifest)", _rate(decoded.__getitem__, k), "clips/s"))
    for name, rate, unit in rows:
        print(f"{name:36s} {rate:10.1f} {unit}")
    if getattr(args, "json_out", None):
        results = [{"mode": name, "rate": round(rate, 1), "unit": unit} for name, rate, unit in rows]
        machine = {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        Path(args.json_out).write_text(
            json.dumps({"results": results, "machine": machine, "quick": args.quick}, indent=2)
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", dest="json_out", default=None, help="write results as JSON here")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

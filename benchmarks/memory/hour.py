"""Disk bytes for one hour of one camera in the memory store, and after a day of window thinning.

    python -m benchmarks.memory.hour --dim 256

The cadence of configs/tiny-cpu.yaml: a window every 8 frames at 30 fps (3.75 windows/s), a segment with its
caption every 4 s, a watch crossing a minute, a pose joined to each. Writes that hour into each engine, then
applies retention as of a day later (the default tiers: every window for an hour, one a second for a day),
and prints live bytes before and after.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from perception.memory.config import MemoryConfig
from perception.memory.open import open_store
from perception.memory.pgserver import private_postgres
from perception.memory.records import Batch, CaptionRow, Place, SegmentRow, WatchRow, WindowRow, unit

S = 10**9
T0 = 1_790_000_000 * S


def hour(dim: int) -> list[Batch]:
    rng = np.random.default_rng(0)
    batches, b = [], Batch()
    n_win = int(3600 * 3.75)
    for k in range(n_win):
        t = T0 + int(k / 3.75 * S)
        b.windows.append(WindowRow("r1", "cam0", t, unit(rng.standard_normal(dim))))
        if k % 15 == 14:  # every 4 s
            sid = k // 15
            p = Place("map", float(rng.uniform(0, 50)), float(rng.uniform(0, 50)), 0.0, t)
            b.segments.append(
                SegmentRow(
                    "r1",
                    "cam0",
                    sid,
                    t - 4 * S,
                    t,
                    sid * 4.0,
                    sid * 4.0 + 4,
                    [
                        {"label": "a red circle moves left", "score": 0.61},
                        {"label": "a red circle grows", "score": 0.55},
                        {"label": "a blue square moves", "score": 0.4},
                    ],
                    unit(rng.standard_normal(dim)),
                    p,
                    p,
                )  # fmt: skip
            )
            b.captions.append(CaptionRow("r1", "cam0", sid, t - 4 * S, t, "a red circle moves to the left", 120.0))
            if sid % 15 == 0:
                b.watches.append(
                    WatchRow("r1", "cam0", sid, t, t, "door open", "config:door open", sid % 30 == 0, 0.6, p)
                )
        if len(b) >= 500:
            batches.append(b)
            b = Batch()
    batches.append(b)
    return batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=256)
    a = ap.parse_args()
    import tempfile
    from pathlib import Path

    batches = hour(a.dim)
    with tempfile.TemporaryDirectory() as tmp, private_postgres() as pg:
        for url in (str(Path(tmp) / "hour.db"), pg.url):
            store = open_store(url, a.dim)
            for b in batches:
                store.write(b)
            rows = store.stats()["rows"]
            before = store.used_bytes()
            store.retain(T0 + 86400 * S, MemoryConfig(), "r1")  # a day later, default tiers
            after_rows = store.stats()["rows"]["windows"]
            print(json.dumps({"engine": store.engine, "dim": a.dim, "rows": rows, "bytes_hour": before,
                              "windows_after_a_day": after_rows, "bytes_after_a_day": store.used_bytes()}), flush=True)  # fmt: skip
            store.close()


if __name__ == "__main__":
    main()

"""Recorder write path vs a bare `mcap` writer, side by side in one run (a benchmark command, not a test).

    perception bench record [--quick] [--json OUT]
    python -m benchmarks.bus.record [--quick] [--json OUT]

Both write the same payloads to files in a temp dir: `mcap-raw` calls `mcap.writer.Writer.add_message`
with ready-made bytes (the ceiling); `recorder` does what the recorder's writer thread does per message
(pack the header and buffers into our msgpack layout, count seqs, write, flush every 0.5 s). Sockets are
not involved: this isolates the cost of our layout and bookkeeping on top of the library.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from mcap.writer import Writer

from benchmarks.bus.messages import Blob
from bus.codec import encode
from bus.mcapfile import COMPRESSIONS, BusMcapWriter, SeqTracker, pack_message

SIZES = [1024, 64 * 1024, 1024 * 1024, 6 * 1024 * 1024]


def _parts(size: int) -> list:
    data = np.random.default_rng(0).integers(0, 255, size=size, dtype=np.uint8)
    return encode("frames/cam0", Blob(label="bench", data=data), seq=0, src="bench", t_ns=0)


def bench_raw(path: Path, parts: list, n: int, compression: str) -> float:
    payload = pack_message(parts[1], parts[2:])
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        w = Writer(f, compression=COMPRESSIONS[compression])
        w.start()
        ch = w.register_channel("frames/cam0", "msgpack", 0)
        for i in range(n):
            w.add_message(ch, log_time=i, data=payload, publish_time=i, sequence=i)
        w.finish()
    return time.perf_counter() - t0


def bench_recorder(path: Path, parts: list, n: int, compression: str) -> float:
    t0 = time.perf_counter()
    w = BusMcapWriter(path, compression=compression)
    seqs = SeqTracker()
    next_flush = time.monotonic() + 0.5
    for i in range(n):
        data = pack_message(memoryview(parts[1]), [memoryview(p) for p in parts[2:]])
        w.write("frames/cam0", "Blob", 1, seq=i, t_pub=i, t_log=i, data=data)
        seqs.add("bench", "frames/cam0", i)
        if time.monotonic() >= next_flush:
            w.flush()
            next_flush = time.monotonic() + 0.5
    w.close()
    return time.perf_counter() - t0


def run(args: argparse.Namespace) -> int:
    results = []
    budget = 64 * 1024 * 1024 if args.quick else 512 * 1024 * 1024  # bytes written per case
    print(f"{'compression':<12} {'size':>9} {'mcap-raw MB/s':>14} {'recorder MB/s':>14} {'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for compression in ("none", "zstd"):
            for size in SIZES:
                parts = _parts(size)
                n = max(20, budget // size)
                total = n * sum(len(p) for p in parts[1:])
                row = {}
                for name, fn in (("mcap-raw", bench_raw), ("recorder", bench_recorder)):
                    secs = fn(Path(tmp) / f"{name}.mcap", parts, n, compression)
                    row[name] = total / secs / 1e6
                    results.append(
                        {
                            "mode": name,
                            "compression": compression,
                            "size": size,
                            "messages": n,
                            "msgs_per_s": n / secs,
                            "mb_per_s": total / secs / 1e6,
                        }
                    )
                print(
                    f"{compression:<12} {size:>9} {row['mcap-raw']:>14.1f} {row['recorder']:>14.1f} "
                    f"{row['recorder'] / row['mcap-raw']:>7.2f}"
                )
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "results": results,
                    "machine": {
                        "platform": platform.platform(),
                        "python": platform.python_version(),
                        "processor": platform.processor(),
                    },
                },
                indent=1,
            )
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bus.record",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="64 MB per case instead of 512 MB")
    p.add_argument("--json", dest="json_out", default=None)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

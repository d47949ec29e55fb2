"""`python -m benchmarks.bus.costs [--size B ...]`: where a small bus message's time goes, per step.

Two tables, printed as markdown (docs/benchmarks.md, "Bus", "Where a small message's time goes"):

1. CPU per message, in this process, best of 5 rounds of N calls (a shared machine's noise only adds):
   building the `Blob` (pydantic validates the constructor's arguments), `encode`, `decode` and its
   steps (msgpack, header checks, depth walk, array view, pydantic validation of the body), a ZeroMQ
   send + receive of the same parts over ipc, and the subscriber's `_ingest` without the decode.
2. One-way latency by step across processes (benchmarks/bus/worker.py `--stages`, the `bus` latency
   run of `perception bench bus`, paced so queues are empty): median of each step, beside `pyzmq-raw`'s
   whole one-way time in the same run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

import msgpack
import numpy as np
import zmq

import benchmarks.bus.messages  # noqa: F401  registers Blob
from benchmarks.bus.bench import run_pair
from benchmarks.bus.messages import Blob
from bus import codec
from bus.config import BusConfig
from bus.message import lookup

N = 20000  # calls per round


def best_us(fn: Callable[[], object], n: int = N, rounds: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / n)
    return best / 1e3


def cpu_costs(size: int, runtime_dir: Path) -> list[tuple[str, float]]:
    data = np.zeros(size, np.uint8)
    msg = Blob(label="1", t_mono_ns=123456789, data=data)
    parts = codec.encode("bench/x", msg, seq=5, src="bench", t_ns=time.time_ns())
    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    push.bind(f"ipc://{runtime_dir}/costs")
    pull.connect(f"ipc://{runtime_dir}/costs")
    push.send_multipart(parts, copy=False)
    frames = pull.recv_multipart(copy=False)

    def round_trip() -> None:
        push.send_multipart(parts, copy=False)
        pull.recv_multipart(copy=False)

    header = msgpack.unpackb(frames[1].bytes, raw=False)
    fields = dict(header["body"])
    fields["data"] = codec._array(header["body"]["data"], frames, set())
    validator = lookup("Blob").__pydantic_validator__

    from bus.pubsub import Subscriber

    sub = Subscriber(BusConfig.local(runtime_dir), ["bench/"], name="costs")
    stream = [[zmq.Frame(bytes(p)) for p in codec.encode("bench/x", msg, seq=i, src="b", t_ns=1)] for i in range(N)]
    feed = iter(())

    def ingest() -> None:
        sub._ingest(next(feed))
        sub.recv_nowait()

    def ingest_round() -> float:
        nonlocal feed
        feed = iter(stream)
        return best_us(ingest, n=N - 1, rounds=1)

    rows = [
        (
            "sender: Blob(...) (pydantic validates the arguments)",
            best_us(lambda: Blob(label="1", t_mono_ns=1, data=data)),
        ),
        ("sender: encode", best_us(lambda: codec.encode("bench/x", msg, seq=5, src="bench", t_ns=1))),
        ("zmq: send_multipart + recv_multipart, ipc, one process", best_us(round_trip)),
        ("receiver: decode, all of it", best_us(lambda: codec.decode(frames))),
        ("  msgpack.unpackb of the header", best_us(lambda: msgpack.unpackb(frames[1].bytes, raw=False))),
        ("  header field checks", best_us(lambda: codec._check_header_fields(header, codec.DEFAULT_LIMITS))),
        ("  body depth walk", best_us(lambda: codec._check_depth(header["body"], 32))),
        ("  array view (checks + np.frombuffer)", best_us(lambda: codec._array(header["body"]["data"], frames, set()))),
        ("  pydantic validation of the body", best_us(lambda: validator.validate_python(fields))),
        ("receiver: _ingest (decode included) + recv_nowait", min(ingest_round() for _ in range(5))),
    ]
    push.close(0)
    pull.close(0)
    ctx.term()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bus.costs", description=__doc__)
    p.add_argument("--size", nargs="*", type=int, default=[64], help="payload sizes (bytes)")
    args = p.parse_args()
    for size in args.size:
        with TemporaryDirectory(prefix="costs-", dir="/tmp") as tmp:
            rows = cpu_costs(size, Path(tmp))
        print(f"\nCPU per message, {size} B payload, best of 5 rounds:\n")
        print("| step | us |\n|---|---:|")
        for name, us in rows:
            print(f"| {name} | {us:.2f} |")
        raw = run_pair("pyzmq-raw", size, "lat", quick=False)
        bus = run_pair("bus", size, "lat", quick=False, extra=["--stages"])
        print(f"\nOne-way latency by step, {size} B, median of {bus['received']} paced messages:\n")
        print("| step | us |\n|---|---:|")
        for name, us in bus["stages_us"].items():
            print(f"| bus: {name} | {us:.0f} |")
        print(f"| bus: sum of the step medians | {sum(bus['stages_us'].values()):.0f} |")
        print(f"| bus: one-way p50 | {bus['p50_us']:.0f} |")
        print(f"| pyzmq-raw: one-way p50 (same run) | {raw['p50_us']:.0f} |")
        print(f"\n{bus['stage_samples']} of {bus['received']} messages had every stage stamped in order")
        print(f"\nCPU per message under the throughput flood ({size} B), each side's own process time:\n")
        print("| transport | sender us/msg | receiver us/msg | receiver msgs/s |\n|---|---:|---:|---:|")
        for transport in ("pyzmq-raw", "bus"):
            r = run_pair(transport, size, "thr", quick=False, extra=["--stages"])
            sent = r.get("sender", {}).get("cpu_us_per_msg")
            print(f"| {transport} | {sent:.1f} | {r['cpu_us_per_msg']:.1f} | {r['msgs_per_s']:,.0f} |")


if __name__ == "__main__":
    main()

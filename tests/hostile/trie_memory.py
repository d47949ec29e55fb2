"""`python -m tests.hostile.trie_memory`: what a subscription flood costs the proxy, measured.

libzmq's XPUB (manual mode) records every subscription message a connection sends in a per-connection
trie before the proxy can refuse it; the proxy bounds its own table (`bus.max_subscriptions`) but not
that trie. This prints the proxy's RSS growth per random subscription while a flooding connection is
open, and after it closes, for the record in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bus.config import BusConfig
from tests.support import REPO, child_env

FLOOD = """
import os, sys, zmq
ctx = zmq.Context()
raw = ctx.socket(zmq.XSUB)
raw.setsockopt(zmq.SNDHWM, 0)
raw.connect(sys.argv[1])
n, length = int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    raw.send(b"\\x01" + os.urandom(length))
raw.send(b"\\x01_bus/ready/flood-done")
print("sent", flush=True)
sys.stdin.read()
"""


def _rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


def measure(n: int, length: int) -> dict:
    rdir = Path(tempfile.mkdtemp(prefix="trie-", dir="/tmp"))
    config = BusConfig.local(rdir, stats_interval_s=0.2)
    env = child_env("WARNING")
    proxy = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bus.demo", "proxy", "--bus-json", config.model_dump_json()],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    flood = None
    try:
        while not (rdir / "sub").exists():
            time.sleep(0.05)
        time.sleep(0.5)
        before = _rss_mb(proxy.pid)
        flood = subprocess.Popen(
            [sys.executable, "-c", FLOOD, config.endpoint("sub"), str(n), str(length)],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        flood.stdout.readline()
        time.sleep(2.0)  # let the proxy read everything
        during = _rss_mb(proxy.pid)
        flood.kill()
        flood.wait()
        time.sleep(1.0)
        after = _rss_mb(proxy.pid)
    finally:
        for p in (flood, proxy):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    return {
        "subscriptions": n,
        "prefix_bytes": length,
        "proxy_rss_before_mb": round(before, 1),
        "proxy_rss_flooded_mb": round(during, 1),
        "proxy_rss_after_close_mb": round(after, 1),
        "kb_per_subscription": round((during - before) * 1000 / n, 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--subscriptions", type=int, nargs="*", default=[1000, 10_000, 20_000])
    p.add_argument("--prefix-bytes", type=int, nargs="*", default=[16, 64, 200])
    args = p.parse_args()
    rows = [measure(n, length) for length in args.prefix_bytes for n in args.subscriptions]
    print(
        "| subscriptions | prefix bytes | proxy RSS before (MB) | while flooded | after the flooder closed | kB per subscription |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['subscriptions']} | {r['prefix_bytes']} | {r['proxy_rss_before_mb']} | {r['proxy_rss_flooded_mb']} "
            f"| {r['proxy_rss_after_close_mb']} | {r['kb_per_subscription']} |"
        )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

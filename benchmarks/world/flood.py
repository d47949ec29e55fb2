"""`python -m benchmarks.world.flood [--clients 8] [--seconds 5] [--json OUT]`: other clients' world RPCs
while several clients flood `watch` / `unwatch`.

One run, three phases on the same machine, each with a fresh world node (its own process, `world.persist`
on), a proxy (its own process) and the flood (`--clients` RPC clients in one process, each calling
watch then unwatch as fast as replies come, rate-limited replies included):
- idle: no flood, the reference;
- before: the world as it was before per-client limits: no limit, and the watch file written (temp file,
  fsync, rename, fsync of the directory) on the event loop at every change (`BeforeWorld` below restores
  exactly that code path);
- after: the shipped world node (per-client token buckets, the file written off the loop, coalesced).
Measured from this process, one call after another: `now` and `watches` latencies (p50, p99, max) while
the flood runs, and the flood's calls per second (attempted, and accepted by the world).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bus.proxy import Proxy
from bus.rpc import RpcClient, RpcError, RpcTimeout
from perception.config import AppConfig
from perception.nodes.watches import write_file
from perception.nodes.world import WorldNode


class BeforeWorld(WorldNode):
    """The world node before this benchmark's change: no write limit, a durable write per change on the loop."""

    def _limit_writes(self, method: str) -> None:
        return None

    def _watches_changed(self) -> None:
        if self._watch_file is not None:
            write_file(self._watch_file, self.watches.runtime.values())
        self.publish(self.watches.message())


def _serve_proxy(config: dict) -> None:
    asyncio.run(Proxy(AppConfig.model_validate(config).bus).run())


def _serve_world(config: dict, before: bool) -> None:
    node = (BeforeWorld if before else WorldNode)(AppConfig.model_validate(config))
    asyncio.run(node.run())


def _flood(config: dict, clients: int, seconds: float, out: Any) -> None:
    async def one(rpc: RpcClient, i: int, until: float, seen: dict[str, int]) -> None:
        n = 0
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            n += 1
            try:
                w = await rpc.call("watch", {"phrase": f"flood {i} {n}", "camera": f"cam{i}"})
                seen["ok"] += 1
                await rpc.call("unwatch", {"id": w["id"]})
                seen["ok"] += 1
            except RpcError as exc:
                seen[exc.code] = seen.get(exc.code, 0) + 1
            except RpcTimeout:
                seen["timeout"] += 1

    async def main() -> dict[str, int]:
        bus = AppConfig.model_validate(config).bus
        rpcs = [RpcClient(bus, timeout=5, retries=0) for _ in range(clients)]
        seen = {"ok": 0, "rate_limited": 0, "timeout": 0}
        until = asyncio.get_running_loop().time() + seconds
        try:
            await asyncio.gather(*(one(rpc, i, until, seen) for i, rpc in enumerate(rpcs)))
        finally:
            for rpc in rpcs:
                rpc.close()
        return seen

    out.put(asyncio.run(main()))


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
    }


async def _measure(config: AppConfig, seconds: float) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {"now": [], "watches": []}
    async with RpcClient(config.bus, timeout=10, retries=0) as rpc:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for method in times:
                t0 = time.perf_counter()
                await rpc.call(method, {})
                times[method].append((time.perf_counter() - t0) * 1e3)
    return {m: _stats(v) for m, v in times.items()}


async def _wait_up(config: AppConfig, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with RpcClient(config.bus, timeout=1, retries=0) as rpc:
        while True:
            try:
                await rpc.call("now", {})
                return
            except RpcTimeout:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)


def phase(name: str, clients: int, seconds: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="flood-") as tmp:
        runtime = Path(tmp) / "rt"
        raw = {"bus": {"runtime_dir": str(runtime)}, "pipeline": {"world": {"persist": str(Path(tmp) / "w.jsonl")}}}
        config = AppConfig.model_validate(raw)
        procs = [ctx.Process(target=_serve_proxy, args=(raw,), daemon=True)]
        procs.append(ctx.Process(target=_serve_world, args=(raw, name == "before"), daemon=True))
        for p in procs:
            p.start()
        try:
            asyncio.run(_wait_up(config))
            result: dict[str, Any] = {"phase": name}
            if name == "idle":
                result.update(asyncio.run(_measure(config, seconds)))
                return result
            out = ctx.Queue()
            flood = ctx.Process(target=_flood, args=(raw, clients, seconds + 1.5, out), daemon=True)
            flood.start()
            time.sleep(1.0)  # the flood is on (its process started, clients connected)
            result.update(asyncio.run(_measure(config, seconds)))
            seen = out.get(timeout=120)
            flood.join(30)
            span = seconds + 1.5
            result["flood_calls_per_s"] = round(sum(seen.values()) / span, 1)
            result["flood_accepted_per_s"] = round(seen["ok"] / span, 1)
            result["flood_rate_limited"] = seen["rate_limited"]
            result["flood_timeouts"] = seen["timeout"]
            return result
        finally:
            for p in procs:
                p.kill()
                p.join(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = [phase(name, args.clients, args.seconds) for name in ("idle", "before", "after")]
    by = {r["phase"]: r for r in rows}
    print(f"{args.clients} flooding clients, {args.seconds:g} s measured per phase, {os.cpu_count()} CPUs")
    head = f"{'phase':<8} {'flood calls/s':>14} {'accepted/s':>11} {'now p50':>8} {'p99':>8} {'max':>8}"
    print(head + f" {'watches p50':>12} {'max':>8}   (ms)")
    for r in rows:
        calls = f"{r.get('flood_calls_per_s', 0):>14.0f} {r.get('flood_accepted_per_s', 0):>11.0f}"
        now, wl = r["now"], r["watches"]
        print(
            f"{r['phase']:<8} {calls} {now['p50_ms']:>8.2f} {now['p99_ms']:>8.2f} {now['max_ms']:>8.2f}"
            f" {wl['p50_ms']:>12.2f} {wl['max_ms']:>8.2f}"
        )
    ratios = {
        f"before/after {m} {k}": round(by["before"][m][k] / by["after"][m][k], 2)
        for m in ("now", "watches")
        for k in ("p50_ms", "max_ms")
    }
    ratios.update(
        {f"after/idle {m} p50_ms": round(by["after"][m]["p50_ms"] / by["idle"][m]["p50_ms"], 2) for m in ("now",)}
    )
    for k, v in ratios.items():
        print(f"{k}: {v}")
    if args.json:
        args.json.write_text(json.dumps({"clients": args.clients, "rows": rows, "ratios": ratios}, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Does a slow subscriber slow the pipeline? `python -m tests.faults.slow_subscriber [--phase-s 20] [--json OUT]`.

A command that prints figures (not a timed test). One live session (tests/faults/session.py: configs/tiny-cpu.yaml,
checkpoints/tiny); this process's observer is the other consumer: it takes every embedding and measures
frame -> embedding latency (received - capture time of the window's last frame). Phases alternate, side by
side in one run: no slow skill / the slow skill sleeping 0.5 s per message with `await` / none again / the
slow skill blocking its loop with time.sleep (tests/faults/slow_skill.py) / none. Per phase: the other
consumer's latency p50/p99, embeddings and frames per second it received, the encoder's stale windows, the
proxy's RSS, and what the slow skill itself reports on stats/skill.slow (handled, superseded, gaps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from tests.faults.session import REPO, TRAINED, Session, child_env

PHASES = ("none", "await", "none", "block", "none")


def slow_skill(session: Session, block: bool) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "perception.cli", "skill", "tests.faults.slow_skill:SlowSkill"]
        + ["--config", str(session.config_path), "--sleep-s", "0.5"]
        + (["--block"] if block else []),
        cwd=REPO,
        env=child_env("WARNING"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def phase(session: Session, mode: str, seconds: float) -> dict[str, Any]:
    obs = session.observer
    skill = None
    if mode != "none":
        skill = slow_skill(session, block=mode == "block")
        line = await asyncio.to_thread(skill.stdout.readline)
        if not line.startswith("skill slow ready"):
            raise RuntimeError(f"the slow skill did not start: {line!r}")
    enc0 = dict(obs.stats.get("encoder", {}))
    t0 = time.monotonic()
    n_lat, n_frames = len(obs.latency_ms), len(obs.by_topic.get("frames/cam0", []))
    proxy_pid = session.pids()["proxy"]
    rss = []
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(1.0)
        rss.append(psutil.Process(proxy_pid).memory_info().rss / 1e6)
    dt = time.monotonic() - t0
    lat = np.array([ms for _, ms in obs.latency_ms[n_lat:]])
    enc1 = obs.stats.get("encoder", {})
    slow = dict(obs.stats.get("skill.slow", {})) if skill is not None else {}
    if skill is not None:
        skill.kill()  # a blocked loop would sleep through its queue before it saw SIGTERM
        await asyncio.to_thread(skill.wait, 30)
    return {
        "slow_skill": mode,
        "seconds": round(dt, 1),
        "embeddings": int(lat.size),
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "latency_p90_ms": round(float(np.percentile(lat, 90)), 1) if lat.size else None,
        "latency_p99_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
        "embeddings_per_s": round(lat.size / dt, 2),
        "frames_per_s": round((len(obs.by_topic.get("frames/cam0", [])) - n_frames) / dt, 1),
        "windows_dropped": enc1.get("windows_dropped", 0) - enc0.get("windows_dropped", 0),
        "proxy_rss_mb_max": round(max(rss), 1) if rss else None,
        "slow_handled": slow.get("handled.on_frame", 0) + slow.get("handled.on_embedding", 0),
        "slow_superseded": slow.get("sub.superseded"),
        "slow_gaps": slow.get("sub.gaps"),
    }


async def measure(opts: argparse.Namespace) -> dict[str, Any]:
    session = Session(Path(tempfile.mkdtemp(prefix="slow-", dir="/tmp")), checkpoint=Path(opts.checkpoint))
    try:
        await session.start()
        await asyncio.sleep(opts.warm_up)
        rows = [await phase(session, mode, opts.phase_s) for mode in PHASES]
        await session.stop()
    finally:
        session.cleanup()
    return {"phases": rows, "phase_s": opts.phase_s}


def render(res: dict[str, Any]) -> str:
    head = (
        f"{'slow skill':10s} {'emb':>5s} {'p50 ms':>7s} {'p90 ms':>7s} {'p99 ms':>7s} {'emb/s':>6s} {'frames/s':>8s} "
        f"{'stale win':>9s} {'proxy MB':>8s} | {'slow: handled':>13s} {'superseded':>10s} {'gaps':>6s}"
    )
    lines = [head]
    for r in res["phases"]:

        def f(v):
            return "-" if v is None else (f"{v:.0f}" if isinstance(v, float) else str(v))

        lines.append(
            f"{r['slow_skill']:10s} {r['embeddings']:5d} {f(r['latency_p50_ms']):>7s} {f(r['latency_p90_ms']):>7s} "
            f"{f(r['latency_p99_ms']):>7s} "
            f"{r['embeddings_per_s']:6.2f} {r['frames_per_s']:8.1f} {f(r['windows_dropped']):>9s} "
            f"{f(r['proxy_rss_mb_max']):>8s} | {f(r['slow_handled'] if r['slow_skill'] != 'none' else None):>13s} "
            f"{f(r['slow_superseded']):>10s} {f(r['slow_gaps']):>6s}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.faults.slow_subscriber", description=__doc__.splitlines()[0])
    p.add_argument("--phase-s", type=float, default=30.0, help="seconds per phase")
    p.add_argument("--warm-up", type=float, default=10.0, help="seconds after start-up before the first phase")
    p.add_argument("--checkpoint", default=str(TRAINED))
    p.add_argument("--json", type=Path, default=None)
    opts = p.parse_args(argv)
    res = asyncio.run(measure(opts))
    print(render(res), flush=True)
    if opts.json is not None:
        opts.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`perception bench workers [--json OUT] [--quick]`: windows/s with 1, 2 and 4 encoder workers.

One run, the phases one after the other: capture + the encoder's workers (no events, decoder or world, so
the encoder is what the cores are spent on) on the config's model (checkpoints/tiny), `--cameras`
synthetic cameras (default 4) at `--fps` (default 60) with a window due at every frame, far more windows
than one model process computes, so windows/s is what the workers deliver. Each worker runs its model on
one torch thread (`encoder.threads: 1`), as the service does by default. Per phase: windows/s from the
workers' `windows` counters, frame -> embedding p50/p99 on receipt, CPU per process, windows dropped
(stale: the model was busy), and the ratio to one worker. Beside them, one worker with two torch threads:
the other way to spend two cores. On a machine with C cores expect the ceiling at about C workers, less
what capture and the proxy take, and less again on a CPU where one worker batches across its cameras
(windows per pass) better than several workers with fewer cameras each.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.pipeline.bench import service_phase
from bus.pubsub import Subscriber
from perception.config import AppConfig, load_config
from perception.messages import Embedding
from perception.nodes.launcher import Launcher


def missing_windows(windows: list[int]) -> int:
    """Windows absent between the first and last seen of one camera (the grid numbers them 0, 1, 2...)."""
    return (max(windows) - min(windows) + 1 - len(set(windows))) if windows else 0


async def takeover_phase(config: AppConfig, victim: str = "encoder.1", camera: str = "cam1") -> dict[str, Any]:
    """SIGKILL one worker of a live service at the default cadence and time the hand-overs of its camera:
    kill -> its first window from another worker, kill -> its first from the restarted worker; windows
    missing per camera over the whole phase (by window number; none is stale at this rate)."""
    launcher = Launcher(config, out=io.StringIO())
    task = asyncio.create_task(launcher.run())
    seen: list[tuple[float, str, int, str]] = []

    async def listen(sub: Subscriber) -> None:
        async for env in sub:
            if isinstance(env.msg, Embedding):
                seen.append((time.monotonic(), env.msg.cam, env.msg.window, env.src))

    async def first(after: float, src: str, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hit = [t for t, cam, _, s in seen if t > after and cam == camera and s == src]
            if hit:
                return hit[0]
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no window of {camera} from {src} within {timeout} s")

    try:
        while "capture" not in launcher.node_stats:  # every node up
            if task.done():
                task.result()
                raise RuntimeError("the service stopped during start-up")
            await asyncio.sleep(0.2)
        sub = await Subscriber(config.bus, ["embeddings/"], name="bench").start()
        listener = asyncio.create_task(listen(sub))
        await asyncio.sleep(5.0)
        t_kill = time.monotonic()
        os.kill(launcher.children[victim].proc.pid, signal.SIGKILL)
        taken = await first(t_kill, "encoder.0")
        back = await first(taken, victim)
        await asyncio.sleep(5.0)
        listener.cancel()
        sub.close()
    finally:
        launcher.request_stop()
        await task
    cams = sorted({cam for _, cam, _, _ in seen})
    return {
        "killed": victim,
        "camera": camera,
        "takeover_s": round(taken - t_kill, 2),
        "handback_s": round(back - t_kill, 2),
        "missing_windows": {c: missing_windows([w for _, cam, w, _ in seen if cam == c]) for c in cams},
        "windows": {c: sum(1 for _, cam, _, _ in seen if cam == c) for c in cams},
        "order_kept": all(
            all(b > a for a, b in zip(ws, ws[1:])) for ws in ([w for _, cam, w, _ in seen if cam == c] for c in cams)
        ),
    }


def phase_config(
    base: AppConfig, runtime_dir: Path, workers: int, cameras: int, fps: float, threads: int = 1
) -> AppConfig:
    data = base.model_dump(mode="json")
    data["bus"].update(runtime_dir=str(runtime_dir), pub="", sub="", rpc="")
    size = data["pipeline"]["cameras"][0].get("size", 64)
    data["pipeline"]["cameras"] = [
        {"name": f"cam{i}", "type": "synthetic", "seed": i, "fps": fps, "size": size, "realtime": True, "loop": True}
        for i in range(cameras)
    ]
    data["pipeline"]["nodes"] = ["encoder", "capture"]
    data["pipeline"]["encoder"].update(rpc="", workers=workers, threads=threads, stride_frames=1)
    data["pipeline"]["world"]["persist"] = None
    return AppConfig.model_validate(data)


def run(args: argparse.Namespace) -> int:
    base = load_config(getattr(args, "config", None))
    seconds = 5.0 if args.quick else 30.0
    # (workers, torch threads each): the last row is the other way to use two cores, one process
    phases = ((1, 1), (2, 1)) if args.quick else ((1, 1), (2, 1), (4, 1), (1, 2))
    cameras, fps = args.cameras or 4, args.fps or 60.0
    rows: list[dict[str, Any]] = []
    print(f"{cameras} synthetic cameras at {fps:g} fps, a window due every frame: {cameras * fps:g} windows/s asked")
    print(
        f"{'workers':>7s} {'threads':>7s} {'win/s':>7s} {'ratio':>6s} {'p50 ms':>7s} {'p99 ms':>7s} {'dropped':>8s} {'cores':>6s}  cpu %"
    )
    with tempfile.TemporaryDirectory(prefix="bench-workers-", dir="/tmp") as tmp:
        for n, threads in phases:
            config = phase_config(base, Path(tmp) / f"w{n}-t{threads}", n, cameras, fps, threads)
            phase = asyncio.run(service_phase(config, seconds, f"workers-{n}-threads-{threads}"))
            cpu = {k: v["cpu_pct"] for k, v in sorted(phase["nodes"].items())}
            row = {
                "workers": n,
                "threads": threads,
                "windows_per_s": phase["windows_per_s"],
                "embed_p50_ms": phase["embed_p50_ms"],
                "embed_p99_ms": phase["embed_p99_ms"],
                "windows_dropped": phase["windows_dropped"],
                "cpu_total_cores": round(sum(cpu.values()) / 100, 2),
                "cpu_pct": cpu,
            }
            row["ratio_to_1"] = round(row["windows_per_s"] / rows[0]["windows_per_s"], 2) if rows else 1.0
            rows.append(row)
            print(
                f"{n:7d} {threads:7d} {row['windows_per_s']:7.1f} {row['ratio_to_1']:6.2f} {row['embed_p50_ms'] or 0:7.1f} "
                f"{row['embed_p99_ms'] or 0:7.1f} {row['windows_dropped'] or 0:8.0f} {row['cpu_total_cores']:6.2f}  "
                + " ".join(f"{k} {v:.0f}" for k, v in cpu.items()),
                flush=True,
            )
        config = phase_config(base, Path(tmp) / "takeover", 2, cameras, 30.0)
        data = config.model_dump(mode="json")
        data["pipeline"]["encoder"]["stride_frames"] = base.pipeline.encoder.stride_frames  # the live cadence
        takeover = asyncio.run(takeover_phase(AppConfig.model_validate(data)))
    print(
        f"SIGKILL {takeover['killed']} ({cameras} cameras at 30 fps, default stride): {takeover['camera']} taken over "
        f"after {takeover['takeover_s']} s, back on its worker after {takeover['handback_s']} s; windows missing "
        f"{takeover['missing_windows']} of {takeover['windows']} seen; per-camera order kept: {takeover['order_kept']}"
    )
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "cameras": cameras,
                    "fps": fps,
                    "seconds": seconds,
                    "rows": rows,
                    "takeover": takeover,
                },
                indent=2,
            )
        )
    return 0

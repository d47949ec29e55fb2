"""What the Foxglove bridge costs, and what a slow client costs the others: a probe, not a timed test.

    python -m benchmarks.viewers.bridge [--seconds 20] [--size 640x480] [--fps 30] [--max-fps 15] [--json OUT]

On a private bus (in-process proxy) a publisher sends synthetic camera frames at `--fps`; a plain bus
subscriber stands for the pipeline (it must keep receiving every frame); `perception foxglove` runs as its
own process with two WebSocket clients: one reads everything, one subscribes to the frames and never
reads (a stalled viewer). Reported: frames per second each client got, what the pipeline's subscriber got
against what was sent, and the bridge's CPU (its own stats/viewer.foxglove heartbeats: cpu_pct, frames
sent, skipped by the rate limit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import struct
import sys
import time
from pathlib import Path

import numpy as np

from bus.message import Stats
from bus.proxy import proxy_in_background
from bus.pubsub import Publisher, Subscriber
from perception.messages import Frame
from perception.testing import private_bus

SUBPROTOCOL = "foxglove.sdk.v1"


async def ws_client(url: str, topic: str, read: bool, stop: asyncio.Event, times: list[float]) -> None:
    import websockets

    async with websockets.connect(url, subprotocols=[SUBPROTOCOL], max_size=None, max_queue=4) as ws:
        subscribed = False
        while not stop.is_set():
            try:
                msg = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            if isinstance(msg, str):
                op = json.loads(msg)
                if op["op"] == "advertise" and not subscribed:
                    for ch in op["channels"]:
                        if ch["topic"] == topic:
                            await ws.send(
                                json.dumps({"op": "subscribe", "subscriptions": [{"id": 1, "channelId": ch["id"]}]})
                            )
                            subscribed = True
            elif struct.unpack_from("<I", msg, 1)[0] == 1:
                times.append(time.monotonic())
                if not read:  # a stalled viewer: subscribed, reads nothing more (TCP backs up into the bridge)
                    await stop.wait()


def rate(times: list[float], t0: float, t1: float) -> float:
    inside = [t for t in times if t0 <= t <= t1]
    return len(inside) / (t1 - t0) if t1 > t0 else 0.0


async def probe(seconds: float, size: tuple[int, int], fps: float, max_fps: float) -> dict:
    with private_bus(stats_interval_s=1.0) as bus:
        cfg = Path(bus.runtime_dir) / "cfg.yaml"
        cfg.write_text(f"bus:\n  runtime_dir: {bus.runtime_dir}\n  stats_interval_s: 1.0\n")
        async with proxy_in_background(bus):
            pub = Publisher(bus, src="probe")
            await pub.ready()
            pipeline = await Subscriber(bus, ["frames/"], name="pipeline").start()
            stats_sub = await Subscriber(bus, ["stats/viewer.foxglove"], name="probe-stats").start()
            bridge = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "perception.cli", "foxglove", "--config", str(cfg), "--port", "0",
                "--max-fps", str(max_fps), stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            line = await asyncio.wait_for(bridge.stdout.readline(), 60)
            if not line.startswith(b"foxglove "):
                raise RuntimeError(f"perception foxglove did not start: {line!r}")
            url = line.decode().split()[1]
            stop = asyncio.Event()
            got_fast: list[float] = []
            got_stalled: list[float] = []
            received = 0
            stats: list[dict] = []

            async def count_pipeline() -> None:
                nonlocal received
                while True:
                    await pipeline.recv()
                    received += 1

            async def read_stats() -> None:
                while True:
                    env = await stats_sub.recv()
                    if isinstance(env.msg, Stats):
                        stats.append(dict(env.msg.counters))

            h, w = size
            rng = np.random.default_rng(0)
            images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(8)]
            tasks = [
                asyncio.create_task(count_pipeline()),
                asyncio.create_task(read_stats()),
                asyncio.create_task(ws_client(url, "/frames/cam0", True, stop, got_fast)),
                asyncio.create_task(ws_client(url, "/frames/cam0", False, stop, got_stalled)),
            ]
            sent = 0
            start = time.monotonic()
            t_measure = start + 3.0  # clients connected and subscribed
            while time.monotonic() < start + seconds:
                frame = Frame(cam="cam0", index=sent, t_capture_ns=time.time_ns(), image=images[sent % 8])
                pub.publish_nowait("frames/cam0", frame)
                sent += 1
                await asyncio.sleep(max(0.0, start + sent / fps - time.monotonic()))
            end = time.monotonic()
            await asyncio.sleep(1.5)  # the last heartbeat and frames in flight
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            bridge.terminate()
            await bridge.wait()
            pipeline.close()
            stats_sub.close()
            pub.close()
    cpu = [s.get("cpu_pct", 0.0) for s in stats[2:]] or [0.0]
    last = stats[-1] if stats else {}
    return {
        "frame": f"{w}x{h}",
        "camera_fps": fps,
        "max_fps": max_fps,
        "seconds": round(end - start, 1),
        "sent": sent,
        "pipeline_received": received,
        "fast_client_fps": round(rate(got_fast, t_measure, end), 2),
        "stalled_client_frames": len(got_stalled),
        "bridge_cpu_pct_mean": round(float(np.mean(cpu)), 1),
        "bridge_cpu_pct_max": round(float(np.max(cpu)), 1),
        "bridge_rss_mb": last.get("rss_mb"),
        "bridge_frames_sent": last.get("frames_sent"),
        "bridge_frames_rate_limited": last.get("frames_rate_limited"),
        "bridge_frames_busy": last.get("frames_busy", 0.0),
        "bridge_sub_superseded": last.get("sub.superseded", 0.0),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.viewers.bridge", description=__doc__)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--size", default="640x480", help="frame WxH (default 640x480)")
    p.add_argument("--fps", type=float, default=30.0, help="camera frames per second (default 30)")
    p.add_argument("--max-fps", type=float, default=15.0, help="the bridge's --max-fps (default 15)")
    p.add_argument("--json", default=None, metavar="OUT")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    result = asyncio.run(probe(args.seconds, (h, w), args.fps, args.max_fps))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

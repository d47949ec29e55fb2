"""`perception bench ros2 [--json OUT] [--quick]`: what the ROS 2 bridge costs, side by side in one run.

1. Live: a plain Cyclone DDS participant (this process, ROS 2 names, sensor-data QoS best effort or
   reliable on both ends, loopback only:
   configs/cyclonedds-loopback.xml, a domain of its own) publishes sensor_msgs/Image rgb8 at 30 fps, at
   640x480 and 1920x1080, to a capture node in its own process (`python -m perception.nodes capture`,
   a `ros2` camera, `capture.send: encoder` as configs/tiny-cpu.yaml). Measured over `seconds`: the
   capture process's CPU (psutil), and the latency from publishing an Image to receiving its Frame on
   frames/<cam> (same host clock; each image carries a code in its pixels that survives scaling, so a lost
   image never shifts the matching; `frames out` vs `expected` shows the losses).
2. Offline: `perception test` (perception/sessions/offline.py) on rosbag2 bags of the same stream written
   by rosbags' writer, raw rgb8 and JPEG, at 480p: frames fed per second, windows per second, and how
   many times faster than the bag's own duration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bus.logs import get_logger
from perception.config import AppConfig, load_config

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = f"file://{REPO / 'configs' / 'cyclonedds-loopback.xml'}"
RESOLUTIONS = {"480p": (640, 480), "1080p": (1920, 1080)}
FPS = 30.0

log = get_logger("bench.ros2")


def frames(width: int, height: int, n: int) -> list[np.ndarray]:
    """Moving colour ramps at (height, width): cheap to make, not trivially compressible."""
    ys, xs = np.mgrid[0:height, 0:width]
    out = []
    for k in range(n):
        r = ((xs + 8 * k) % 256).astype(np.uint8)
        g = ((ys + 4 * k) % 256).astype(np.uint8)
        b = (((xs ^ ys) + k) % 256).astype(np.uint8)
        out.append(np.stack([r, g, b], axis=2))
    return out


async def live_phase(
    width: int, height: int, seconds: float, base: AppConfig, domain: int, reliable: bool = False
) -> dict[str, Any]:
    from bus.proxy import proxy_in_background
    from bus.pubsub import Subscriber
    from perception.messages import Frame
    from perception.ros2 import dds
    from perception.ros2.interfaces import Header, Image, Time
    from perception.testing import private_bus

    with private_bus() as bus:
        data = base.model_dump()
        data["bus"] = bus.model_dump() | {"latest_prefixes": []}
        data["pipeline"]["cameras"] = [
            {"name": "robot", "type": "ros2", "topic": "/camera/image_raw", "reliable": reliable}
        ]
        cfg = AppConfig.model_validate(data)
        cfg_file = Path(bus.runtime_dir) / "capture.json"
        cfg_file.write_text(cfg.model_dump_json())
        async with proxy_in_background(bus):
            sub = await Subscriber(cfg.bus, ["frames/"], name="bench").start()
            proc = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "-m", "perception.nodes", "capture", "--config-json", str(cfg_file)],
                env={**os.environ, "CYCLONEDDS_URI": LOOPBACK, "ROS_DOMAIN_ID": str(domain)},
                cwd=REPO,
                stderr=subprocess.DEVNULL,
            )
            try:
                from cyclonedds.domain import DomainParticipant

                dp = DomainParticipant(domain)
                writer = dds.writer(dp, "/camera/image_raw", Image, dds.sensor_qos(reliable=reliable))
                deadline = time.monotonic() + 60
                while not writer.get_matched_subscriptions() and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                # serialized once: the Python binding's own serializer takes ~1.4 s for a 1080p Image (a C++
                # camera driver does not); each write patches the header stamp and a frame code (the grey
                # level of a centre square, which survives capture's scaling) into the CDR bytes
                raw = bytearray(
                    Image(
                        Header(Time(0, 0), "camera"),
                        height,
                        width,
                        "rgb8",
                        0,
                        width * 3,
                        frames(width, height, 1)[0].tobytes(),
                    ).serialize()
                )
                pixels = np.frombuffer(raw, np.uint8, offset=len(raw) - width * height * 3).reshape(height, width, 3)
                half = height // 4
                centre = (slice(height // 2 - half, height // 2 + half), slice(width // 2 - half, width // 2 + half))
                carrier = Image(Header(Time(0, 0), "camera"), 1, 1, "rgb8", 0, 3, b"xyz")
                carrier.serialize = lambda **_: bytes(raw)
                sent_at: dict[int, int] = {}  # code -> when the last image with it was written
                lat: list[float] = []
                ps = psutil.Process(proc.pid)
                warm = 2.0
                t0 = time.monotonic()
                cpu0 = None
                k = k0 = 0

                def collect() -> None:
                    while (env := sub.recv_nowait()) is not None:
                        if isinstance(env.msg, Frame) and cpu0 is not None:
                            img = env.msg.image
                            h, w = img.shape[:2]
                            code = int(np.median(img[h // 2 - 2 : h // 2 + 2, w // 2 - 2 : w // 2 + 2]))
                            if code in sent_at:
                                lat.append((time.time_ns() - sent_at[code]) / 1e6)

                while time.monotonic() - t0 < seconds + warm:
                    due = t0 + k / FPS
                    while (now := time.monotonic()) < due:
                        collect()
                        await asyncio.sleep(min(0.002, due - now))
                    if cpu0 is None and now - t0 >= warm:
                        cpu0, tw0, k0 = ps.cpu_times(), time.monotonic(), k
                    code = 16 + k % 224
                    pixels[centre] = code
                    t_ns = time.time_ns()
                    struct.pack_into("<iI", raw, 4, t_ns // 10**9, t_ns % 10**9)  # header.stamp after the CDR header
                    sent_at[code] = t_ns
                    writer.write(carrier)
                    k += 1
                cpu1, tw1 = ps.cpu_times(), time.monotonic()
                end = time.monotonic() + 1.0
                while time.monotonic() < end:
                    collect()
                    await asyncio.sleep(0.01)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
                sub.close()
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (tw1 - tw0) * 100
    every = math.gcd(base.pipeline.encoder.frame_step, base.pipeline.encoder.stride_frames)
    return {
        "resolution": f"{width}x{height}",
        "qos": "reliable" if reliable else "best effort",
        "fps": FPS,
        "sent": k - k0,
        "frames_expected": (k - k0) // every,
        "frames_out": len(lat),
        "capture_cpu_pct": round(cpu, 1),
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 2) if lat else None,
        "latency_p99_ms": round(float(np.percentile(lat, 99)), 2) if lat else None,
    }


def offline_phase(encoding: str, seconds: float, base: AppConfig, tmp: Path) -> dict[str, Any]:
    from perception.ros2.bag_session import bag_camera, bag_frames
    from perception.ros2.sample_bags import BagSpec, write_bag
    from perception.sessions.offline import run_offline

    n = int(seconds * FPS)
    bag = write_bag(tmp / f"bag-{encoding}", frames(640, 480, n), BagSpec(encoding=encoding, fps=FPS))
    size_mb = sum(p.stat().st_size for p in bag.iterdir()) / 1e6
    camera = bag_camera(base, bag, None)
    run = asyncio.run(run_offline(bag, base, tmp / f"out-{encoding}.mcap", inputs=bag_frames(base, camera)))
    return {
        "bag": f"640x480 {encoding}, {n} images ({seconds:.0f} s at {FPS:.0f} fps), {size_mb:.1f} MB",
        "frames_fed": run.inputs,
        "windows": run.windows,
        "feed_s": round(run.feed_s, 2),
        "images_per_s": round(n / run.feed_s, 1),
        "windows_per_s": round(run.windows / run.feed_s, 2),
        "x_realtime": round(seconds / run.feed_s, 2),
    }


def run(args: argparse.Namespace) -> int:
    import random

    base = load_config(getattr(args, "config", None) or "configs/tiny-cpu.yaml")
    data = base.model_dump()
    data["pipeline"]["world"]["persist"] = None
    base = AppConfig.model_validate(data)
    seconds = 6.0 if args.quick else 20.0
    os.environ.setdefault("CYCLONEDDS_URI", LOOPBACK)  # this process's participant: loopback too
    domain = random.Random(os.getpid()).randint(100, 230)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    results: dict[str, Any] = {"host": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    results["live"] = []
    for name, (w, h) in RESOLUTIONS.items():
        for reliable in (False, True):
            log.info("live phase", resolution=name, reliable=reliable, seconds=seconds)
            results["live"].append(asyncio.run(live_phase(w, h, seconds, base, domain, reliable)))
    results["offline"] = []
    with tempfile.TemporaryDirectory(prefix="bench-ros2-") as tmp:
        for encoding in ("rgb8", "jpeg"):
            log.info("offline phase", encoding=encoding)
            results["offline"].append(offline_phase(encoding, seconds, base, Path(tmp)))
    live = {r["resolution"]: r for r in results["live"] if r["qos"] == "best effort"}
    small, large = live["640x480"], live["1920x1080"]
    if small["capture_cpu_pct"]:
        results["ratio_cpu_1080p_over_480p"] = round(large["capture_cpu_pct"] / small["capture_cpu_pct"], 2)
    print(render(results))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return 0


def render(results: dict[str, Any]) -> str:
    lines = ["ROS 2 Image (rgb8, 30 fps) -> frames/<cam> (capture.send: encoder)", ""]
    lines.append(
        "| resolution | QoS | images sent | frames expected | frames out | capture CPU % | latency p50 ms | p99 ms |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in results["live"]:
        lines.append(
            f"| {r['resolution']} | {r['qos']} | {r['sent']} | {r['frames_expected']} | {r['frames_out']} | {r['capture_cpu_pct']} "
            f"| {r['latency_p50_ms']} | {r['latency_p99_ms']} |"
        )
    if "ratio_cpu_1080p_over_480p" in results:
        lines.append(f"\ncapture CPU 1080p / 480p: {results['ratio_cpu_1080p_over_480p']}x")
    lines += ["", "perception test on a rosbag2 bag", ""]
    lines.append("| bag | frames fed | windows | feed s | images/s | windows/s | x realtime |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in results["offline"]:
        lines.append(
            f"| {r['bag']} | {r['frames_fed']} | {r['windows']} | {r['feed_s']} | {r['images_per_s']} "
            f"| {r['windows_per_s']} | {r['x_realtime']} |"
        )
    return "\n".join(lines)

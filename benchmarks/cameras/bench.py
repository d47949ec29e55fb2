"""`perception bench cameras [--json OUT] [--quick]`: real encoded video at real resolutions through the
whole service, what capture sends side by side.

Clips: H.264 (libx264, yuv420p, 30 fps) written with PyAV from FFmpeg's test sources (`testsrc2`,
`smptebars`) at 640x480, 1280x720 and 1920x1080, cached under the system temp dir. Each phase runs
`perception up`'s machinery (the Launcher: proxy + five node processes, checkpoints/tiny) with 1, 2 or 4
file cameras looping those clips in real time, and measures for `seconds` after a settle: CPU per process
(the proxy included) and in total, frame -> embedding p50/p99 (on receipt, same host clock), windows/s,
and what was dropped (frames a file camera was late for, frames conflated at the encoder, stale windows).
Modes, per resolution and camera count, one after the other in one run:
- `all`: capture publishes every frame at the camera's resolution (how the service worked before);
- `all-shm`: the same frames, through shared memory instead of the proxy (bus.shm, bus/shm.py);
- `encoder`: only the frames the encoder's windows use, at the model's input size (perception/nodes/feed.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.pipeline.bench import service_phase
from bus.logs import get_logger
from perception.config import AppConfig, load_config

RESOLUTIONS = {"480p": (640, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
SOURCES = ("testsrc2", "smptebars")
# mode -> (pipeline.capture, bus.shm.enabled)
MODES = {"all": ({"send": "all"}, False), "all-shm": ({"send": "all"}, True), "encoder": ({"send": "encoder"}, False)}
CLIP_S = 20
FPS = 30

log = get_logger("bench.cameras")


def clip(width: int, height: int, source: str, cache: Path) -> Path:
    """An H.264 clip of FFmpeg's `source` test pattern (written once, then reused)."""
    import av

    path = cache / f"{source}-{width}x{height}-{FPS}fps-{CLIP_S}s.mp4"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    log.info("writing clip", path=str(path))
    with av.open(f"{source}=size={width}x{height}:rate={FPS}:duration={CLIP_S}", format="lavfi") as src:
        with av.open(str(tmp), mode="w") as out:
            stream = out.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"preset": "veryfast", "crf": "23"}
            for frame in src.decode(video=0):
                out.mux(stream.encode(frame.reformat(format="yuv420p")))
            out.mux(stream.encode(None))
    tmp.rename(path)
    return path


def phase_config(base: AppConfig, runtime_dir: Path, clips: list[Path], mode: str) -> AppConfig:
    data = base.model_dump(mode="json")
    data["bus"].update(runtime_dir=str(runtime_dir), pub="", sub="", rpc="")
    data["pipeline"]["encoder"]["rpc"] = ""
    data["pipeline"]["world"]["persist"] = None
    data["pipeline"]["cameras"] = [
        {"name": f"cam{i}", "type": "file", "path": str(p), "loop": True, "realtime": True} for i, p in enumerate(clips)
    ]
    data["pipeline"]["capture"], data["bus"]["shm"]["enabled"] = MODES[mode]
    return AppConfig.model_validate(data)


def summarise(res: str, cams: int, mode: str, phase: dict[str, Any]) -> dict[str, Any]:
    nodes = phase["nodes"]
    total = sum(v["cpu_pct"] for v in nodes.values())
    return {
        "resolution": res,
        "cameras": cams,
        "mode": mode,
        "cpu_total_cores": round(total / 100, 2),
        "cpu_pct": {n: v["cpu_pct"] for n, v in sorted(nodes.items())},
        "windows_per_s": phase["windows_per_s"],
        "expected_windows_per_s": None,
        "embed_p50_ms": phase["embed_p50_ms"],
        "embed_p99_ms": phase["embed_p99_ms"],
        "windows_dropped": phase["windows_dropped"],
        "frames_superseded": phase["frames_superseded"],
        "frames_skipped": phase.get("frames_skipped"),
    }


def run(args: argparse.Namespace) -> int:
    base = load_config(getattr(args, "config", None))
    seconds = 6.0 if args.quick else 15.0
    resolutions = ["1080p"] if args.quick else list(RESOLUTIONS)
    counts = (1, 2) if args.quick else (1, 2, 4)
    cache = Path(tempfile.gettempdir()) / "perception-bench-cameras"
    rows = []
    stride_s = base.pipeline.encoder.stride_frames / FPS
    print(
        f"{'res':6s} {'cams':>4s} {'mode':8s} {'cores':>6s} {'capture':>8s} {'proxy':>6s} {'encoder':>8s} "
        f"{'others':>7s} {'win/s':>6s} {'p50 ms':>7s} {'p99 ms':>7s} {'dropped w/f':>12s}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-cam-", dir="/tmp") as tmp:
        for res in resolutions:
            w, h = RESOLUTIONS[res]
            clips = [clip(w, h, SOURCES[i % len(SOURCES)], cache) for i in range(max(counts))]
            for cams in counts:
                for mode in MODES:
                    rdir = Path(tmp) / f"{res}-{cams}-{mode}"
                    config = phase_config(base, rdir, clips[:cams], mode)
                    phase = asyncio.run(service_phase(config, seconds, f"{res}-{cams}-{mode}"))
                    row = summarise(res, cams, mode, phase)
                    row["expected_windows_per_s"] = round(cams / stride_s, 2)
                    rows.append(row)
                    c = row["cpu_pct"]
                    others = sum(v for n, v in c.items() if n not in ("capture", "proxy", "encoder"))
                    dropped = f"{row['windows_dropped'] or 0:.0f}/{(row['frames_superseded'] or 0):.0f}"
                    print(
                        f"{res:6s} {cams:4d} {mode:8s} {row['cpu_total_cores']:6.2f} {c.get('capture', 0):8.1f} "
                        f"{c.get('proxy', 0):6.1f} {c.get('encoder', 0):8.1f} {others:7.1f} {row['windows_per_s']:6.2f} "
                        f"{row['embed_p50_ms'] or 0:7.1f} {row['embed_p99_ms'] or 0:7.1f} {dropped:>12s}",
                        flush=True,
                    )
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "seconds": seconds,
                    "clip": {"codec": "libx264", "fps": FPS, "sources": SOURCES},
                    "rows": rows,
                },
                indent=2,
            )
        )
    return 0

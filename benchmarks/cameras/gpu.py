"""Cameras per GPU: the vjepa2-vitl preset inside the real service, more synthetic cameras each phase.

    python -m benchmarks.cameras.gpu [--cameras 8,16,24,32] [--seconds 20] [--no-jit] [--json OUT]
    python -m benchmarks.cameras.gpu --tiny --cameras 1,2 --seconds 5     # CPU smoke run of the same wiring
    python -m benchmarks.cameras.gpu --open-vljepa [--tiny]                # the same through an imported checkpoint

What runs: `perception up`'s launcher (proxy + five node processes) on configs/vjepa2-vitl.yaml, with the
three parts at their published sizes and random weights (perception/model/tiny_real.py write_random_vitl,
~3.6 GB written once under the temp dir), bf16 on the GPU, N synthetic ShapesWorld cameras at 256 px and
30 fps, the encoder batching across cameras (`max_batch` = N). Per phase: windows/s, frame -> embedding
p50/p99, dropped windows, CPU per node, and GPU utilisation and memory sampled by nvidia-smi every 0.5 s.
A camera count passes when no window is dropped and embedding p99 <= one stride + 100 ms (367 ms at the
config's stride of 8 frames at 30 fps); cameras per GPU is the largest count that passes.
With --open-vljepa the model is a checkpoint imported by `perception weights import open-vljepa` from a
best.pt in the reference's layout built on those parts (8 frames per window, retrieval captions).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from benchmarks.pipeline.bench import service_phase
from bus.logs import get_logger
from perception.config import CONFIG_DIR, AppConfig, load_config

log = get_logger("bench.cameras.gpu")
FPS = 30


class GpuSampler:
    """nvidia-smi's utilisation and memory every 0.5 s while a phase runs (nothing without nvidia-smi)."""

    def __init__(self) -> None:
        self.util: list[float] = []
        self.mem_mib: list[float] = []
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            cmd = [
                "nvidia-smi",
                "--query-gpu=utilization.gpu,memory.used",
                "--format=csv,noheader,nounits",
                "-lms",
                "500",
            ]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            util, mem = (float(x) for x in line.split(",")[:2])
            self.util.append(util)
            self.mem_mib.append(mem)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)

    def summary(self) -> dict[str, Any]:
        if not self.util:
            return {"gpu_util_pct": None, "gpu_mem_mib": None}
        return {"gpu_util_pct": round(sum(self.util) / len(self.util), 1), "gpu_mem_mib": max(self.mem_mib)}


def phase_config(base: AppConfig, runtime_dir: Path, model: dict, cameras: int, size: int, jit: bool) -> AppConfig:
    data = base.model_dump(mode="json")
    data["bus"].update(runtime_dir=str(runtime_dir), pub="", sub="", rpc="")
    data["model"] = model
    data["pipeline"]["encoder"].update(rpc="", max_batch=cameras, jit=jit)
    data["pipeline"]["world"]["persist"] = None
    data["pipeline"]["cameras"] = [
        {"name": f"cam{i}", "type": "synthetic", "fps": FPS, "realtime": True, "loop": True, "seed": i, "size": size}
        for i in range(cameras)
    ]
    return AppConfig.model_validate(data)


def imported_model(tiny: bool, cache: Path) -> tuple[dict, int]:
    """An open-vljepa-layout best.pt on the tiny or the random real-size parts, imported as our checkpoint."""
    from perception.model.importers.open_vljepa import import_checkpoint
    from perception.model.importers.reference_layout import write_best_pt, write_tiny_parts
    from perception.model.tiny_real import write_random_vitl

    root = cache / ("open-vljepa-tiny" if tiny else "open-vljepa-vitl")
    out = root / "ckpt"
    if not (out / "config.json").exists():
        dirs = write_tiny_parts(root) if tiny else write_random_vitl(cache / "vitl-random")
        sizes = {"max_len": 16} if tiny else {"layers": 8, "proj_dim": 1536, "image_size": 256, "max_len": 64}
        best = write_best_pt(root / "best.pt", dirs, **sizes)
        import_checkpoint(best, out, str(dirs["vjepa2"]), str(dirs["llama"]), str(dirs["gemma3"]))
    return {"checkpoint": str(out), "device": "auto", "dtype": "auto"}, (32 if tiny else 256)


def models(tiny: bool, cache: Path, open_vljepa: bool = False) -> tuple[dict, int]:
    """The `model:` section and the camera frame size for the run."""
    from perception.model.tiny_real import tiny_real_model_section, write_random_vitl, write_tiny_pretrained

    if open_vljepa:
        return imported_model(tiny, cache)
    if tiny:
        return tiny_real_model_section(write_tiny_pretrained(cache / "tiny")), 32
    dirs = write_random_vitl(cache / "vitl-random")
    weights = {"x_encoder": str(dirs["vjepa2"]), "predictor": str(dirs["llama"]), "y_encoder": str(dirs["gemma3"])}
    return {"preset": "vjepa2-vitl", "device": "auto", "dtype": "auto", "weights": weights}, 256


async def sweep(counts: list[int], seconds: float, tiny: bool, jit: bool, open_vljepa: bool = False) -> dict[str, Any]:
    base = load_config(CONFIG_DIR / "vjepa2-vitl.yaml")
    stride_s = base.pipeline.encoder.stride_frames / FPS
    bound_ms = 1000 * stride_s + 100
    cache = Path(tempfile.gettempdir()) / "perception-bench-gpu"
    model, size = models(tiny, cache, open_vljepa)
    rows = []
    for n in counts:
        with tempfile.TemporaryDirectory(prefix="bench-gpu-", dir="/tmp") as tmp, GpuSampler() as gpu:
            phase = await service_phase(phase_config(base, Path(tmp), model, n, size, jit), seconds, f"{n} cameras")
        row = {
            "cameras": n,
            "windows_per_s": phase["windows_per_s"],
            "expected_windows_per_s": round(n / stride_s, 2),
            "embed_p50_ms": phase["embed_p50_ms"],
            "embed_p99_ms": phase["embed_p99_ms"],
            "windows_dropped": phase["windows_dropped"],
            "cpu_pct": {k: v["cpu_pct"] for k, v in sorted(phase["nodes"].items())},
            **gpu.summary(),
        }
        p99 = row["embed_p99_ms"]
        row["passes"] = bool(row["windows_dropped"] == 0 and p99 is not None and p99 <= bound_ms)
        log.info("bench.gpu.phase", **{k: v for k, v in row.items() if k != "cpu_pct"})
        rows.append(row)
    passing = [r["cameras"] for r in rows if r["passes"]]
    return {
        "model": ("tiny real-class (CPU smoke)" if tiny else "vjepa2-vitl, random weights, bf16")
        + (", imported open-vljepa layout" if open_vljepa else ""),
        "jit": jit,
        "stride_s": round(stride_s, 3),
        "p99_bound_ms": round(bound_ms, 1),
        "seconds": seconds,
        "rows": rows,
        "cameras_per_gpu": max(passing) if passing else 0,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cameras.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--cameras", default="8,16,24,32", help="camera counts, one phase each")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per phase")
    p.add_argument("--tiny", action="store_true", help="the tiny real-class model on CPU: a smoke run of the wiring")
    p.add_argument("--no-jit", action="store_true", help="run the encoder's pass without torch.jit tracing")
    p.add_argument("--open-vljepa", action="store_true", help="through a checkpoint imported from open-vljepa's layout")
    p.add_argument("--json", dest="json_out", default=None)
    a = p.parse_args(argv)
    if not a.tiny:
        import torch

        if not torch.cuda.is_available():
            print("benchmarks.cameras.gpu needs a CUDA GPU (or --tiny for a CPU smoke run)")
            return 2
    counts = [int(x) for x in a.cameras.split(",")]
    result = asyncio.run(sweep(counts, a.seconds, a.tiny, not a.no_jit, a.open_vljepa))
    print(
        f"{'cams':>4s} {'win/s':>7s} {'expect':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'dropped':>7s} {'gpu %':>6s} {'pass':>5s}"
    )
    for r in result["rows"]:
        print(
            f"{r['cameras']:4d} {r['windows_per_s']:7.2f} {r['expected_windows_per_s']:7.2f} {r['embed_p50_ms']!s:>7s} "
            f"{r['embed_p99_ms']!s:>7s} {r['windows_dropped']!s:>7s} {r['gpu_util_pct']!s:>6s} {r['passes']!s:>5s}"
        )
    print(f"cameras per GPU (p99 <= {result['p99_bound_ms']} ms, no dropped window): {result['cameras_per_gpu']}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

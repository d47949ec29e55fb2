"""`perception bench model`: latency of one window through the model, on this machine's CPU (or GPU).

Side by side in one run: encode_video, predict, the whole window (encode + predict), predict for 4 queries
reusing one S_V vs re-encoding per query, batch 8, and greedy decoding. Weights do not change the timing,
so the config's preset (or checkpoint) is used as it is.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import torch

from bus.logs import get_logger
from perception.config import load_config
from perception.model.vljepa import VLJepa

log = get_logger("bench.model")

QUERIES = ["what is happening?", "what colour is the shape?", "what shape is it?", "how many shapes are there?"]


def _time(fn: Callable[[], object], iters: int, warmup: int, sync: Callable[[], None]) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        fn()
        sync()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def _row(mode: str, batch: int, ms: list[float]) -> dict:
    ms_sorted = sorted(ms)
    p50 = statistics.median(ms_sorted)
    p99 = ms_sorted[min(len(ms_sorted) - 1, int(round(0.99 * (len(ms_sorted) - 1))))]
    return {
        "mode": mode,
        "batch": batch,
        "min_ms": round(ms_sorted[0], 3),
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "windows_per_s": round(1000.0 * batch / p50, 2),
        "iters": len(ms),
    }


def run(args: argparse.Namespace) -> int:
    section = load_config(getattr(args, "config", None)).model
    model = VLJepa.from_config(section)
    cfg = model.cfg.x_encoder
    dev = model.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    iters, warmup = (10, 2) if getattr(args, "quick", False) else (50, 5)
    g = torch.Generator().manual_seed(0)
    clip1 = torch.randint(0, 256, (1, cfg.frames, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8, generator=g)
    clip8 = clip1.expand(8, -1, -1, -1, -1).contiguous()
    clip1, clip8 = clip1.to(dev), clip8.to(dev)
    s_v = model.encode_video(clip1)
    model.embed_text(QUERIES)
    s_hat = model.predict(s_v, QUERIES[0])

    cases: list[tuple[str, int, Callable[[], object]]] = [
        ("encode_video", 1, lambda: model.encode_video(clip1)),
        ("predict", 1, lambda: model.predict(s_v, QUERIES[0])),
        ("window", 1, lambda: model.predict(model.encode_video(clip1), QUERIES[0])),
        ("4_queries_reuse_s_v", 1, lambda: model.predict(s_v, QUERIES)),
        ("4_queries_reencode", 1, lambda: [model.predict(model.encode_video(clip1), q) for q in QUERIES]),
        ("window", 8, lambda: model.predict(model.encode_video(clip8), QUERIES[0])),
        ("classify_10_labels_cached", 1, lambda: model.classify(s_hat, [f"label {i}" for i in range(10)])),
        ("decode_greedy_16", 1, lambda: model.decode(s_hat, max_tokens=16)),
    ]
    results = []
    for mode, batch, fn in cases:
        results.append(_row(mode, batch, _time(fn, iters, warmup, sync)))
        log.info("measured", **results[-1])
    by = {(r["mode"], r["batch"]): r for r in results}
    ratios = {
        "reencode_over_reuse_4_queries": round(
            by[("4_queries_reencode", 1)]["p50_ms"] / by[("4_queries_reuse_s_v", 1)]["p50_ms"], 2
        ),
        "batch8_throughput_over_batch1": round(
            by[("window", 8)]["windows_per_s"] / by[("window", 1)]["windows_per_s"], 2
        ),
    }
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": psutil.cpu_count(logical=True),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m": round(psutil.getloadavg()[0], 2),  # other work on a shared machine skews p50/p99
        "torch": torch.__version__,
        "device": str(dev),
        "dtype": str(model.dtype).replace("torch.", ""),
        "preset": model.cfg.preset,
        "frames": cfg.frames,
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "visual_tokens": cfg.num_tokens,
    }
    print(
        f"model latency ({machine['preset']}, {machine['frames']}x{cfg.image_size}px patch {cfg.patch_size}, "
        f"{machine['device']} {machine['dtype']}, {machine['torch_threads']} threads)"
    )
    print(f"{'mode':<28}{'batch':>6}{'min ms':>10}{'p50 ms':>10}{'p99 ms':>10}{'windows/s':>11}")
    for r in results:
        print(
            f"{r['mode']:<28}{r['batch']:>6}{r['min_ms']:>10.2f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}"
            f"{r['windows_per_s']:>11.1f}"
        )
    for k, v in ratios.items():
        print(f"{k}: {v}x")
    if getattr(args, "json_out", None):
        Path(args.json_out).write_text(json.dumps({"results": results, "ratios": ratios, "machine": machine}, indent=2))
    return 0


def measure_windows(
    model: VLJepa, batches: tuple[int, ...] = (1, 8), iters: int = 20, warmup: int = 3, query_tokens: int = 16
) -> list[dict]:
    """ms per window and clips/s of encode + predict at each batch size, with random query token ids (works
    without any tokenizer, so a preset built with random weights can be timed)."""
    from perception.model.y_encoder import TokenBatch

    cfg = model.cfg.x_encoder
    dev = model.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    vocab = (
        model.predictor.query_embed.table.num_embeddings
        if model.predictor.query_embed.table is not None
        else model.y_encoder.word_embeddings.num_embeddings
    )
    rows = []
    for b in batches:
        clips = torch.randint(0, 256, (b, cfg.frames, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8, device=dev)
        q = TokenBatch(
            torch.randint(0, vocab, (b, query_tokens), device=dev),
            torch.ones(b, query_tokens, dtype=torch.long, device=dev),
        )
        ms = _time(lambda clips=clips, q=q: model.predict(model.encode_video(clips), q), iters, warmup, sync)
        row = _row("window", b, ms)
        row["ms_per_window"] = round(row["p50_ms"] / b, 3)
        row["clips_per_s"] = row.pop("windows_per_s")
        rows.append(row)
    return rows


def vitl_random(out_json: str | None = None) -> int:
    """The prepared GPU check: vjepa2-vitl preset, random weights, bf16, batch 1 and 8.
    Run on a GPU host: `python -m benchmarks.model.bench --vitl-random OUT.json`."""
    from perception.model.config import preset_config

    if not torch.cuda.is_available():
        print("vitl-random needs a CUDA GPU")
        return 2
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = VLJepa(preset_config("vjepa2-vitl"), load_weights=False)
    model.to(dtype=torch.bfloat16).eval()
    rows = measure_windows(model, (1, 8))
    machine = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "dtype": "bfloat16",
        "preset": "vjepa2-vitl",
        "frames": model.cfg.x_encoder.frames,
        "image_size": model.cfg.x_encoder.image_size,
        "visual_tokens": model.cfg.x_encoder.num_tokens,
        "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }
    print(json.dumps({"results": rows, "machine": machine}, indent=2))
    if out_json:
        Path(out_json).write_text(json.dumps({"results": rows, "machine": machine}, indent=2))
    return 0


if __name__ == "__main__":
    import sys

    if len(sys.argv) >= 2 and sys.argv[1] == "--vitl-random":
        raise SystemExit(vitl_random(sys.argv[2] if len(sys.argv) > 2 else None))
    print("usage: python -m benchmarks.model.bench --vitl-random [OUT.json]   (or: perception bench model)")

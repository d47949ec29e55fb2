"""`perception bench train`: throughput of the sharded recipe's step, its FLOPs and memory, DDP against FSDP2.

    perception bench train [--json OUT]                      # CPU: the tiny real-class model (perception/model/tiny_real.py)
    python -m benchmarks.training.bench --vitl [--json OUT]  # GPU: the vjepa2-vitl preset, random weights, bf16

Three measurements, side by side in one run:
1. **The step** (one process): the sharded recipe's contrastive step (perception/train/sharded.py: frozen
   X-encoder under inference_mode, predictor + Y-encoder forward/backward, InfoNCE, AdamW) at growing
   micro-batches, with live video and with cached S_V. samples/s, peak memory, model FLOPs per sample
   counted from the code (torch.utils.flop_counter over one step: every matmul, convolution and attention,
   forward and backward) and MFU against the GPU's bf16 dense peak. On GPU the batch doubles until it
   does not fit. Token ids are random (random weights have no tokenizer); the shapes are the recipe's.
2. **DDP against FSDP2** (CPU only, 2 gloo ranks under torchrun, the real trainer on tiny shards):
   samples/s and trainable state per rank (parameters + AdamW moments).
3. **Projection** from (1)'s best samples/s: wall time and GPU-hours for a sample budget on 1, 8 and 192
   GPUs, assuming linear scaling (DDP's all-reduce of the trainable gradients overlaps the backward; a
   measured multi-GPU run is the check).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bus.logs import get_logger

log = get_logger("bench.train")

# bf16 dense tensor-core peak (no sparsity), from NVIDIA's data sheets, TFLOP/s
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1}
QUERY_TOKENS, TARGET_TOKENS = 16, 32  # a short question, a caption
BUDGETS = {"the paper's controlled comparison (15M samples, docs/model.md)": 15_000_000}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def build_model(vitl: bool, root: Path, device: torch.device):
    from perception.model import VLJepa
    from perception.model.config import ModelSection, preset_config
    from perception.model.tiny_real import tiny_real_model_section, write_tiny_pretrained

    if vitl:
        model = VLJepa(preset_config("vjepa2-vitl"), load_weights=False)
    else:
        section = ModelSection.model_validate(tiny_real_model_section(write_tiny_pretrained(root / "pretrained")))
        model = VLJepa(section.to_model_config())
    model.y_decoder.requires_grad_(False)
    model.to(device)
    if device.type == "cuda":
        model.x_encoder.to(torch.bfloat16)
    return model.train()


class Step:
    """One optimizer step of the recipe on synthetic inputs of the model's shapes."""

    def __init__(self, model, batch: int, cached: bool, device: torch.device) -> None:
        from perception.model.y_encoder import TokenBatch

        xc = model.cfg.x_encoder
        self.model, self.cached, self.device = model, cached, device
        g = torch.Generator().manual_seed(0)
        self.video = torch.randint(
            0, 255, (batch, xc.frames, 3, xc.image_size, xc.image_size), generator=g, dtype=torch.uint8
        )
        with torch.inference_mode():
            self.features = model.x_encoder(self.video.to(device)).clone() if cached else None  # [B,N,Dv]
        ones = torch.ones(batch, QUERY_TOKENS, dtype=torch.long)
        self.q_ids = torch.randint(1000, 2000, (batch, QUERY_TOKENS), generator=g).to(device)
        self.q_mask = ones.to(device)
        self.targets = TokenBatch(
            torch.randint(1000, 2000, (batch, TARGET_TOKENS), generator=g),
            torch.ones(batch, TARGET_TOKENS, dtype=torch.long),
        ).to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=1e-5)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def __call__(self) -> None:
        from perception.model.loss import info_nce

        m = self.model
        with self.autocast:
            if self.cached:
                s_v = self.features
            else:
                with torch.inference_mode():
                    s_v = m.x_encoder(self.video.to(self.device, non_blocking=True))
                s_v = s_v.clone()
            pred = m.predictor(s_v, self.q_ids, self.q_mask).embedding  # [B,D]
            target = m.y_encoder(self.targets)  # [B,D]
            loss = info_nce(pred.float(), target.float(), m.temperature).loss
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def flops_per_sample(step: Step, batch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops() / batch


def vitl_flops_per_sample() -> dict:
    """The vitl preset's model FLOPs per sample, counted from the code on the meta device (no weights, no
    GPU): the frozen X-encoder's forward, and the trainable parts' forward + backward."""
    from torch.utils.flop_counter import FlopCounterMode

    from perception.model import VLJepa
    from perception.model.config import preset_config
    from perception.model.y_encoder import TokenBatch

    with torch.device("meta"):
        m = VLJepa(preset_config("vjepa2-vitl"), load_weights=False)
        xc = m.cfg.x_encoder
        video = torch.zeros(1, xc.frames, 3, xc.image_size, xc.image_size)  # [1,T,C,H,W]
        ids, mask = torch.ones(1, QUERY_TOKENS, dtype=torch.long), torch.ones(1, QUERY_TOKENS, dtype=torch.long)
        target = TokenBatch(
            torch.ones(1, TARGET_TOKENS, dtype=torch.long), torch.ones(1, TARGET_TOKENS, dtype=torch.long)
        )
    m.y_decoder.requires_grad_(False)
    m.train()
    frozen, trained = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with frozen, torch.no_grad():
        s_v = m.x_encoder(video)  # [1,N,Dv]
    with trained:
        pred = m.predictor(s_v, ids, mask).embedding  # [1,D]
        (pred.float().sum() + m.y_encoder(target).float().sum()).backward()
    return {
        "x_encoder_forward_tflop": round(frozen.get_total_flops() / 1e12, 3),
        "trainable_forward_backward_tflop": round(trained.get_total_flops() / 1e12, 3),
        "visual_tokens": int(s_v.shape[1]),
        "trainable_params": sum(p.numel() for p in m.parameters() if p.requires_grad),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_step(model, batch: int, cached: bool, device: torch.device, steps: int) -> dict:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    step = Step(model, batch, cached, device)
    step()  # warm-up (allocator, kernels, AdamW state)
    flops = flops_per_sample(step, batch)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    wall = time.perf_counter() - t0
    sps = batch * steps / wall
    row = {
        "features": "cached" if cached else "live",
        "micro_batch": batch,
        "samples_per_s": round(sps, 2),
        "step_ms": round(1000 * wall / steps, 1),
        "gflops_per_sample": round(flops / 1e9, 3),
        "achieved_tflops": round(flops * sps / 1e12, 4),
    }
    peak = peak_tflops(device)
    if peak:
        row["mfu"] = round(flops * sps / (peak * 1e12), 4)
    if device.type == "cuda":
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    del step
    return row


def step_rows(model, device: torch.device, batches: list[int], steps: int) -> list[dict]:
    """Each (features, batch) in turn; on GPU the batch doubles until out of memory."""
    rows = []
    for cached in (False, True):
        for b in batches:
            try:
                row = measure_step(model, b, cached, device, steps)
            except torch.OutOfMemoryError:
                log.info("bench.train.oom", micro_batch=b, features="cached" if cached else "live")
                break
            log.info("bench.train.step", **row)
            rows.append(row)
    return rows


def strategy_rows(root: Path, steps: int) -> list[dict]:
    """DDP against FSDP2: the real trainer, 2 gloo ranks on this CPU, tiny real-class model on tiny shards."""
    import yaml

    from perception.data.shards import write_shards
    from perception.data.video_io import write_clip_set
    from perception.model.tiny_real import tiny_real_model_section, write_tiny_pretrained

    manifest = write_clip_set(root / "clips", count=8, seed=1, frames=4, size=32, fps=4)
    write_shards(manifest, root / "shards", shard_size=4)
    dirs = write_tiny_pretrained(root / "pretrained-ranks")
    rows = []
    for strategy in ("ddp", "fsdp"):
        cfg = {
            "recipe": "sharded",
            "threads": 1,
            "model": tiny_real_model_section(dirs),
            "data": {"shards": str(root / "shards"), "streams": 4, "num_workers": 1, "shuffle_buffer": 4},
            "parallel": {"strategy": strategy},
            "steps": steps,
            "global_batch": 16,
            "micro_batch": 8,
            "lr": 1e-3,
            "log_every": steps,
            "checkpoint_every": 10**6,
        }
        path = root / f"{strategy}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        cmd += ["-m", "perception.cli", "train", "--config", str(path), "--out", str(root / strategy)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PERCEPTION_LOG_LEVEL": "INFO"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{strategy} run failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        progress = [json.loads(line) for line in (proc.stdout + proc.stderr).splitlines() if '"progress"' in line]
        last = progress[-1]
        rows.append(
            {
                "strategy": strategy,
                "ranks": 2,
                "samples_per_s": last["samples_per_s"],
                "trainable_state_mib_per_rank": last["state_mb"],
            }
        )
        log.info("bench.train.strategy", **rows[-1])
    return rows


def projection(samples_per_s_per_gpu: float, budgets: dict[str, int]) -> list[dict]:
    rows = []
    for name, samples in budgets.items():
        for gpus in (1, 8, 192):
            hours = samples / (samples_per_s_per_gpu * gpus) / 3600
            rows.append(
                {
                    "budget": name,
                    "samples": samples,
                    "gpus": gpus,
                    "wall_h": round(hours, 2),
                    "gpu_h": round(hours * gpus, 1),
                }
            )
    return rows


def table(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(out)


def bench(vitl: bool, quick: bool, json_out: str | None, budget: int | None) -> int:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if vitl and device.type != "cuda":
        print("bench train --vitl needs a CUDA GPU (the vitl step does not fit a useful CPU measurement)")
        return 2
    torch.manual_seed(0)
    steps = 3 if quick else (10 if device.type == "cuda" else 20)
    batches = [8, 16, 32, 64, 128, 256] if device.type == "cuda" else ([4, 16] if quick else [4, 8, 16, 32])
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        model = build_model(vitl, root, device)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        steps_rows = step_rows(model, device, batches, steps)
        del model
        strategies = strategy_rows(root, 4 if quick else 12) if device.type == "cpu" else []
    best = max((r for r in steps_rows if r["features"] == "live"), key=lambda r: r["samples_per_s"])
    best_cached = max((r for r in steps_rows if r["features"] == "cached"), key=lambda r: r["samples_per_s"])
    budgets = dict(BUDGETS)
    if budget:
        budgets[f"--budget {budget}"] = budget
    vitl_flops = vitl_flops_per_sample()
    live_tflop = vitl_flops["x_encoder_forward_tflop"] + vitl_flops["trainable_forward_backward_tflop"]
    ceilings = {
        gpu: {
            "live": round(peak / live_tflop, 1),
            "cached": round(peak / vitl_flops["trainable_forward_backward_tflop"], 1),
        }
        for gpu, peak in PEAK_BF16_TFLOPS.items()
    }
    result = {
        "vitl_flops_per_sample": vitl_flops,
        "vitl_samples_per_s_at_mfu_1": ceilings,  # the spec's peak / counted FLOPs: a ceiling, not a measurement
        "machine": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{os.cpu_count()}",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "peak_bf16_tflops": peak_tflops(device),
        },
        "model": "vjepa2-vitl (random weights, bf16 autocast)"
        if vitl
        else "tiny real-class (perception/model/tiny_real.py)",
        "trainable_params": trainable,
        "frozen_params": frozen,
        "steps": steps_rows,
        "cached_over_live": round(best_cached["samples_per_s"] / best["samples_per_s"], 2),
        "strategies": strategies,
        # a CPU's samples/s says nothing about GPU-hours: projections come from GPU runs only
        "projection_live": projection(best["samples_per_s"], budgets) if device.type == "cuda" else [],
        "projection_cached": projection(best_cached["samples_per_s"], budgets) if device.type == "cuda" else [],
    }
    print(f"trainable {trainable:,} / frozen {frozen:,} parameters on {result['machine']['device']}")
    print(table(steps_rows))
    print(f"cached / live, best samples/s: {result['cached_over_live']}x")
    if strategies:
        print(table(strategies))
    print(f"vitl per sample (counted on the meta device): {vitl_flops}")
    print(f"vitl samples/s per GPU at MFU 1.0 (ceiling): {ceilings}")
    if device.type == "cuda":
        print("projection from the best live row, linear scaling:")
        print(table(result["projection_live"]))
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {json_out}")
    return 0


def run(args: argparse.Namespace) -> int:
    return bench(vitl=False, quick=args.quick, json_out=args.json_out, budget=None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.training.bench", description=__doc__.splitlines()[0])
    p.add_argument("--vitl", action="store_true", help="the vjepa2-vitl preset with random weights (CUDA only)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", dest="json_out", default=None)
    p.add_argument("--budget", type=int, default=None, help="also project this many training samples")
    a = p.parse_args(argv)
    return bench(a.vitl, a.quick, a.json_out, a.budget)


if __name__ == "__main__":
    raise SystemExit(main())

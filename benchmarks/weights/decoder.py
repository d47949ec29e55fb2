"""Time of the text-only Y-decoder recipe on an imported open-vljepa checkpoint (random weights).

    python -m benchmarks.weights.decoder [--steps 200] [--batch 128] [--json OUT]      # a CUDA GPU
    python -m benchmarks.weights.decoder --tiny --steps 20                            # CPU smoke run

The checkpoint is `benchmarks.cameras.gpu`'s: a best.pt in the reference's layout on the three parts at
their published sizes (random weights), imported by `perception weights import open-vljepa`. The corpus is
configs/phrases.txt. Prints steps/s, texts/s, peak GPU memory and the projection to the config's 20k steps.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from perception.config import CONFIG_DIR


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.weights.decoder", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--tiny", action="store_true", help="tiny real-class parts on CPU (a smoke run)")
    p.add_argument("--json", dest="json_out", default=None)
    a = p.parse_args(argv)
    import torch

    from benchmarks.cameras.gpu import imported_model
    from perception.train.config import load_text_decoder_config
    from perception.train.text_decoder import train_text_decoder

    if not a.tiny and not torch.cuda.is_available():
        print("benchmarks.weights.decoder needs a CUDA GPU (or --tiny for a CPU smoke run)")
        return 2
    cache = Path(tempfile.gettempdir()) / "perception-bench-gpu"
    section, _ = imported_model(a.tiny, cache)
    over = {"steps": a.steps, "batch_size": a.batch, "log_every": max(1, a.steps // 10), "device": "auto"}
    if a.tiny:
        over["decoder"] = {
            "prefix_tokens": 2,
            "hidden": 32,
            "layers": 1,
            "heads": 2,
            "intermediate": 64,
            "max_tokens": 12,
        }
    cfg = load_text_decoder_config(None, {k: v for k, v in over.items()})
    full = load_text_decoder_config(None).steps
    with tempfile.TemporaryDirectory(prefix="bench-dec-") as tmp:
        t0 = time.monotonic()
        summary = train_text_decoder(section["checkpoint"], CONFIG_DIR / "phrases.txt", Path(tmp) / "out", cfg)
        wall = time.monotonic() - t0
    steps_per_s = summary["steps"] / summary["wall_s"] if summary["wall_s"] else None
    result = {
        "model": "tiny real-class (CPU smoke)" if a.tiny else "open-vljepa layout on vjepa2-vitl parts, random weights",
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "steps": summary["steps"],
        "batch": a.batch,
        "train_wall_s": summary["wall_s"],
        "total_wall_s": round(wall, 1),
        "steps_per_s": round(steps_per_s, 3) if steps_per_s else None,
        "texts_per_s": round(steps_per_s * a.batch, 1) if steps_per_s else None,
        "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if torch.cuda.is_available() else None,
        "projected_hours_for_config_steps": round(full / steps_per_s / 3600, 2) if steps_per_s else None,
        "first_loss": summary["first_loss"],
        "last_loss": summary["last_loss"],
    }
    print(json.dumps(result, indent=2))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

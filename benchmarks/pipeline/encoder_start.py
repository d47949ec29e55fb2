"""Where an encoder's cold start goes: `python -m benchmarks.pipeline.encoder_start [--runs N] [--json OUT]`.

Each run is a fresh `python` process doing what `python -m perception.nodes encoder` does before it can
encode, one phase at a time, on the config's model (default configs/tiny-cpu.yaml, checkpoints/tiny):
interpreter and the node's own imports (bus, zmq, numpy, pydantic), `import torch`, `import transformers`,
the model package (VLJepa, tokenizers), building the model (its external frozen parts included, e.g. the
Y-encoder from its package), reading the safetensors weights into it, and the first window pass (traced).
Prints the median of each phase over the runs. A restart pays all of it unless a spare holds it
(`supervisor.spares`, docs/reliability.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

PHASES = ("interpreter + node imports", "torch", "transformers", "model package", "build", "weights", "first pass")


def child(config: str) -> None:
    """The phases, timed in this process; one JSON line {phase: seconds} on stdout."""
    marks: dict[str, float] = {}
    t = time.monotonic()

    def mark(name: str) -> None:
        nonlocal t
        now = time.monotonic()
        marks[name] = round(now - t, 4)
        t = now

    import perception.nodes.encoder  # noqa: F401  (bus, zmq, numpy, pydantic, structlog)
    from perception.config import load_config

    cfg = load_config(config)
    mark("interpreter + node imports")  # since this function started; the interpreter: parent-side
    import torch

    mark("torch")
    import transformers  # noqa: F401

    mark("transformers")
    from safetensors.torch import load_file

    from perception.model.vljepa import CONFIG_FILE, WEIGHTS_FILE, VLJepa, VLJepaConfig
    from perception.model.window import WindowRunner
    from perception.nodes.models import resolve_checkpoint

    mark("model package")
    torch.set_num_threads(cfg.pipeline.encoder.threads or 1)
    d = resolve_checkpoint(cfg.model)
    meta = json.loads((d / CONFIG_FILE).read_text())
    ext = meta.get("external", {})
    parts = {p.split(".")[0] for p in ext} | ({"predictor"} if "predictor.query_embed.table." in ext else set())
    model = VLJepa(VLJepaConfig.from_dict(meta["model"]), load_weights=parts)
    mark("build")
    model.load_state_dict(load_file(str(d / WEIGHTS_FILE)), strict=False)
    model._place(cfg.model.device, cfg.model.dtype)
    mark("weights")
    runner = WindowRunner(model, cfg.pipeline.encoder.query, jit=cfg.pipeline.encoder.jit)
    size = model.cfg.x_encoder.image_size
    runner(torch.zeros(1, model.cfg.x_encoder.frames, 3, size, size, dtype=torch.uint8))
    mark("first pass")
    print(json.dumps(marks), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pipeline.encoder_start", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/tiny-cpu.yaml")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.child:
        child(opts.config)
        return 0
    runs = []
    for _ in range(opts.runs):
        t0 = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.pipeline.encoder_start", "--child", "--config", opts.config],
            capture_output=True,
            text=True,
            check=True,
        )
        total = time.monotonic() - t0
        marks = json.loads(out.stdout.strip().splitlines()[-1])
        marks["interpreter + node imports"] += round(total - sum(marks.values()), 4)  # start-up and exit
        marks["total"] = round(total, 4)
        runs.append(marks)
    med = {k: round(statistics.median(r[k] for r in runs), 2) for k in [*PHASES, "total"]}
    print(f"encoder cold start, {opts.runs} fresh processes, median seconds ({opts.config})")
    for k, v in med.items():
        print(f"{k:28s} {v:6.2f}  {100 * v / med['total']:5.1f} %")
    if opts.json is not None:
        opts.json.write_text(json.dumps({"median_s": med, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

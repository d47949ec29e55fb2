"""Choose the events node's segmenter threshold on the validation split: the caption path end to end.

`perception eval` reports `stream_segments_described` at the service's settings (configs/tiny-cpu.yaml).
This replays the same path (online segments, each one's mean embedding decoded, the covering caption
judged) for several `threshold`s on embeddings computed once, so a setting is chosen on `val` and only
then read on the test split. Each row: described with its 95 % interval (bootstrap over streams),
captions per true segment, and the looser `mentioned` share.

    python -m perception.eval.events_sweep [CHECKPOINT] --split val --thresholds 3,5,8,12
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from bus.logs import get_logger
from perception.eval.stream_captions import service_segmenter
from perception.eval.suite import SuiteConfig, described_task, embed_streams
from perception.model import VLJepa

log = get_logger("eval.events_sweep")


def sweep(model: VLJepa, split: str, thresholds: list[float], cfg: SuiteConfig) -> list[dict]:
    data = embed_streams(model, split, cfg)
    base = service_segmenter(cfg.events_config, cfg.step_s)
    rows = []
    for threshold in thresholds:
        r = described_task(model, data, cfg, dataclasses.replace(base, threshold=threshold))
        described, seg = r["stream_segments_described"], r["stream_segments"]
        rows.append(
            {
                "threshold": threshold,
                "described": described,
                "captions_per_segment": round(seg["captions"] / seg["scored"], 2),
                "mentioned": round(seg["mentioned"] / seg["scored"], 3),
                "segments": seg["scored"],
            }
        )
        lo, hi = described["ci95"]
        log.info(
            "setting",
            threshold=threshold,
            described=f"{described['value']:.3f} [{lo:.3f}, {hi:.3f}]",
            captions_per_segment=rows[-1]["captions_per_segment"],
            mentioned=rows[-1]["mentioned"],
        )
    return rows


def floats(text: str) -> list[float]:
    """A comma-separated list of numbers from the command line."""
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?", default="checkpoints/tiny")
    p.add_argument("--split", default="val", help="val (choose here) or heldout (only to report)")
    p.add_argument("--thresholds", type=floats, default=[3.0, 5.0, 8.0, 12.0])
    p.add_argument("--streams-per-seed", type=int, default=SuiteConfig.streams_per_seed)
    p.add_argument("--config", default=None, help="service config whose other events settings to keep")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = VLJepa.load(args.checkpoint, device="cpu", dtype="float32")
    model.eval()
    cfg = SuiteConfig(streams_per_seed=args.streams_per_seed, events_config=args.config)
    rows = sweep(model, args.split, args.thresholds, cfg)
    out = {"checkpoint": args.checkpoint, "split": args.split, "streams": len(cfg.stream_seeds()), "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

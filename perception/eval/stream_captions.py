"""The service's caption path replayed offline: how often a live stream's captions match the ground truth.

`perception eval` scores captions of whole clips; the service captions *segments* that its online
segmenter cuts from a stream of overlapping windows, decoding each segment's mean embedding (what the
events and decoder nodes do). This replays that path on ShapesWorld streams without processes or
real-time pacing, so the end-to-end caption check (tests/nodes/test_pipeline.py) has a figure over far
more segments than a test can wait for:

    python -m perception.eval.stream_captions [CHECKPOINT] [--streams 6] [--seconds 120] [--config CFG]

- described: the share of true segments whose captions (those that mostly cover it) include one with
  colour, shape and action all right;
- colour / action: per caption, the share whose slot matches a true segment it overlaps.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch

from perception.config import load_config
from perception.data.stream import Segment, ShapesStream
from perception.data.vocab import parse_slots
from perception.eval.online import segment_online
from perception.eval.suite import SuiteConfig, stream_embeddings
from perception.model import VLJepa
from perception.nodes.segmenter import OnlineSegmenterConfig, segment_steps


@dataclass
class Caption:
    start_s: float
    end_s: float
    text: str


@dataclass
class StreamScore:
    seed: int
    segments: int  # true segments inside the captioned span
    described: int
    captions: int
    colour: int
    action: int


def overlap(c: Caption, t: Segment) -> float:
    """Seconds a caption's span shares with a true segment (<= 0: none)."""
    return min(c.end_s, t.end_s) - max(c.start_s, t.start_s)


def stream_captions(
    model: VLJepa, stream: ShapesStream, seg_cfg: OnlineSegmenterConfig, suite: SuiteConfig
) -> list[Caption]:
    """One caption per online segment, decoded from the segment's mean embedding (as the events node asks)."""
    embs, times = stream_embeddings(model, stream, suite)  # [T, D], [T]
    segments, _ = segment_online(embs, times, seg_cfg)
    means = torch.from_numpy(np.stack([embs[s.start : s.end].mean(0) for s in segments])).float()  # [S, D]
    texts = model.decode(means)
    half = suite.step_s / 2
    return [
        Caption(float(times[s.start]) - half, float(times[s.end - 1]) + half, t)
        for s, t in zip(segments, texts, strict=True)
    ]


def score(stream: ShapesStream, caps: list[Caption], seed: int) -> StreamScore:
    """The end-to-end test's two checks, over a whole stream."""
    lo, hi = caps[0].start_s, caps[-1].end_s
    truths = [t for t in stream.segments if t.start_s >= lo and t.end_s <= hi]
    mine: dict[int, list[Caption]] = {i: [] for i in range(len(truths))}
    for c in caps:
        best = max(range(len(truths)), key=lambda i: overlap(c, truths[i]), default=None)
        if best is not None and overlap(c, truths[best]) > 0:
            mine[best].append(c)
    described = sum(any(parse_slots(c.text) == t.slots for c in mine[i]) for i, t in enumerate(truths))
    colour = action = 0
    for c in caps:
        slots = parse_slots(c.text)
        over = [t for t in stream.segments if overlap(c, t) > 0]
        colour += slots is not None and any(slots.colour == t.slots.colour for t in over)
        action += slots is not None and any(slots.action == t.slots.action for t in over)
    return StreamScore(seed, len(truths), described, len(caps), colour, action)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?", default="checkpoints/tiny")
    p.add_argument("--streams", type=int, default=6)
    p.add_argument("--first-seed", type=int, default=5, help="the end-to-end test's stream is seed 5")
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--split", default="train", help="the end-to-end test's stream is from the train split")
    p.add_argument(
        "--config", default=None, help="service config whose events section to replay (default: configs/tiny-cpu.yaml)"
    )
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = VLJepa.load(args.checkpoint, device="cpu", dtype="float32")
    suite = SuiteConfig()  # windows of 8 frames over 2 s every 0.25 s: the service's 2.1 s every 0.27 s
    ev = load_config(args.config).pipeline.events  # the events node's settings, its seconds as steps here
    min_len, max_len = segment_steps(ev.min_len_s, ev.max_len_s, suite.step_s)
    seg_cfg = OnlineSegmenterConfig(
        threshold=ev.threshold, window=ev.window, confirm=ev.confirm, min_len=min_len, max_len=max_len
    )
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.streams):
        stream = ShapesStream(
            seed=seed,
            split=args.split,
            duration_s=args.seconds,  # at the windows' frame rate
            fps=model.cfg.x_encoder.frames / suite.window_s,
            size=model.cfg.x_encoder.image_size,
        )
        rows.append(score(stream, stream_captions(model, stream, seg_cfg, suite), seed))
        r = rows[-1]
        print(
            f"seed {seed}: described {r.described}/{r.segments}, captions {r.captions}, "
            f"colour {r.colour}, action {r.action}",
            flush=True,
        )
    seg, cap = sum(r.segments for r in rows), sum(r.captions for r in rows)
    total = {
        "described": round(sum(r.described for r in rows) / seg, 3),
        "colour": round(sum(r.colour for r in rows) / cap, 3),
        "action": round(sum(r.action for r in rows) / cap, 3),
        "segments": seg,
        "captions": cap,
        "checkpoint": args.checkpoint,
    }
    print(json.dumps({"total": total, "streams": [asdict(r) for r in rows]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The service's caption path replayed offline: how often a live stream's captions match the ground truth.

`perception eval` scores captions of whole clips; the service captions *segments* that its online
segmenter cuts from a stream of overlapping windows, decoding each segment's mean embedding (what the
events and decoder nodes do). This replays that path on ShapesWorld streams without processes or
real-time pacing, so the end-to-end caption check (tests/nodes/test_pipeline.py) has a figure over far
more segments than a test can wait for (`perception eval` reports the same figure on its test streams):

    python -m perception.eval.stream_captions [CHECKPOINT] [--streams 16] [--seconds 60] [--split heldout]

- described: the share of true segments whose covering caption (the one that overlaps it most) has
  colour, shape and action all right; ambiguous segments (every object still, more than one in view: no
  model could name the subject) are left out and counted;
- mentioned: the looser check the live end-to-end test makes: some caption whose span lies mostly on the
  segment names it right (a service that garbles frames or windows fails even that);
- colour / action: per caption, the share whose slot matches a true segment it overlaps.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from perception.config import load_config
from perception.data.stream import Segment, ShapesStream
from perception.data.vocab import TEST_SPLIT, parse_slots
from perception.eval.online import segment_online
from perception.eval.stream_embed import eval_stream, stream_embeddings
from perception.model import VLJepa
from perception.nodes.segmenter import OnlineSegmenterConfig, segment_steps

STEP_S, WINDOW_S = 0.25, 2.0  # windows of 8 frames over 2 s every 0.25 s: the service's 2.1 s every 0.27 s


@dataclass
class Caption:
    start_s: float
    end_s: float
    text: str


@dataclass
class StreamScore:
    seed: int
    segments: int  # scored true segments inside the captioned span
    described: int
    captions: int
    colour: int
    action: int
    ambiguous: int = 0  # true segments inside the span left out (see the module doc)
    mentioned: int = 0  # scored segments named right by any caption that overlaps it most (a looser check)
    per_segment: list[bool] = field(default_factory=list, repr=False)  # described, per scored segment


def overlap(c: Caption, t: Segment) -> float:
    """Seconds a caption's span shares with a true segment (<= 0: none)."""
    return min(c.end_s, t.end_s) - max(c.start_s, t.start_s)


def service_segmenter(config: str | None = None, step_s: float = STEP_S) -> OnlineSegmenterConfig:
    """The events node's segmenter settings (configs/tiny-cpu.yaml by default), its seconds as steps here."""
    ev = load_config(config).pipeline.events
    min_len, max_len = segment_steps(ev.min_len_s, ev.max_len_s, step_s)
    return OnlineSegmenterConfig(
        threshold=ev.threshold, window=ev.window, confirm=ev.confirm, min_len=min_len, max_len=max_len
    )


def captions_of(
    model: VLJepa, embs: np.ndarray, times: np.ndarray, seg_cfg: OnlineSegmenterConfig, step_s: float = STEP_S
) -> list[Caption]:
    """One caption per online segment, decoded from the segment's mean embedding (as the events node asks)."""
    segments, _ = segment_online(embs, times, seg_cfg)
    means = torch.from_numpy(np.stack([embs[s.start : s.end].mean(0) for s in segments])).float()  # [S, D]
    texts = model.decode(means)
    half = step_s / 2
    return [
        Caption(float(times[s.start]) - half, float(times[s.end - 1]) + half, t)
        for s, t in zip(segments, texts, strict=True)
    ]


def stream_captions(model: VLJepa, stream: ShapesStream, seg_cfg: OnlineSegmenterConfig) -> list[Caption]:
    embs, times = stream_embeddings(model, stream, STEP_S, WINDOW_S)  # [T, D], [T]
    return captions_of(model, embs, times, seg_cfg)


def covering(t: Segment, caps: list[Caption]) -> Caption | None:
    """The caption that overlaps `t` most (the earlier on a tie), None if none does."""
    best = max(caps, key=lambda c: overlap(c, t), default=None)
    return best if best is not None and overlap(best, t) > 0 else None


def score(stream: ShapesStream, caps: list[Caption], seed: int) -> StreamScore:
    """The end-to-end test's checks, over a whole stream."""
    lo, hi = caps[0].start_s, caps[-1].end_s
    inside = [t for t in stream.segments if t.start_s >= lo and t.end_s <= hi]
    truths = [t for t in inside if not t.ambiguous]
    per_segment = []
    for t in truths:
        c = covering(t, caps)
        per_segment.append(c is not None and parse_slots(c.text) == t.slots)
    mine: dict[int, list[Caption]] = {i: [] for i in range(len(truths))}  # each caption to its main segment
    for c in caps:
        best = max(range(len(truths)), key=lambda i: overlap(c, truths[i]), default=None)
        if best is not None and overlap(c, truths[best]) > 0:
            mine[best].append(c)
    mentioned = sum(any(parse_slots(c.text) == t.slots for c in mine[i]) for i, t in enumerate(truths))
    colour = action = 0
    for c in caps:
        slots = parse_slots(c.text)
        over = [t for t in stream.segments if overlap(c, t) > 0]
        colour += slots is not None and any(slots.colour == t.slots.colour for t in over)
        action += slots is not None and any(slots.action == t.slots.action for t in over)
    return StreamScore(
        seed,
        len(truths),
        sum(per_segment),
        len(caps),
        colour,
        action,
        ambiguous=len(inside) - len(truths),
        mentioned=mentioned,
        per_segment=per_segment,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?", default="checkpoints/tiny")
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--first-seed", type=int, default=0, help="the end-to-end test's stream is train seed 5")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--split", default=TEST_SPLIT, help="heldout (test), val or train")
    p.add_argument(
        "--config", default=None, help="service config whose events section to replay (default: configs/tiny-cpu.yaml)"
    )
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = VLJepa.load(args.checkpoint, device="cpu", dtype="float32")
    seg_cfg = service_segmenter(args.config)
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.streams):
        stream = eval_stream(model, seed, args.split, args.seconds, WINDOW_S)
        rows.append(score(stream, stream_captions(model, stream, seg_cfg), seed))
        r = rows[-1]
        print(
            f"seed {seed}: described {r.described}/{r.segments} ({r.ambiguous} ambiguous left out), "
            f"mentioned {r.mentioned}, "
            f"captions {r.captions}, colour {r.colour}, action {r.action}",
            flush=True,
        )
    seg, cap = sum(r.segments for r in rows), sum(r.captions for r in rows)
    total = {
        "described": round(sum(r.described for r in rows) / seg, 3),
        "mentioned": round(sum(r.mentioned for r in rows) / seg, 3),
        "colour": round(sum(r.colour for r in rows) / cap, 3),
        "action": round(sum(r.action for r in rows) / cap, 3),
        "segments": seg,
        "ambiguous_excluded": sum(r.ambiguous for r in rows),
        "captions": cap,
        "split": args.split,
        "checkpoint": args.checkpoint,
    }
    print(
        json.dumps(
            {"total": total, "streams": [{k: v for k, v in asdict(r).items() if k != "per_segment"} for r in rows]}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A NaVQA-style evaluation of the memory: a simulated robot drives a loop past ShapesWorld scenes for 1 h,
8 h and 24 h of stream time; spatial, temporal and descriptive questions with ground truth are answered
through the memory's queries (perception/memory/queries.py, the tools' code path) by fixed templates, no LLM.

    python -m benchmarks.memory.navqa --hours 1 8 24 --questions 100 --json docs/data/bench_navqa.json

What is simulated, and what is not: 12 places on a 40 m grid each hold one ShapesWorld thing (colour +
shape) that is swapped for an absent one every 2 h; the robot visits each place for 60 s (20 s between
places, a 16-minute loop), and closes a segment every 4 s there with a caption of the thing doing a random
action, its pose (the place +- 0.5 m) and an embedding. **Perception is idealised**: a segment's embedding is
the real tiny model's text embedding (checkpoints/tiny) of its true caption plus noise (cosine ~0.9 to the
clean one), and its caption is the true one. So this measures the memory and its retrieval, not the model.

Questions (ground truth from the simulation), answered by one template each:
    spatial      "where did you last see the red circle?"  last_seen(text)   -> pose; right within 3 m
    temporal     "how long ago did you last see it?"        last_seen(text)   -> end time; right within 60 s
    descriptive  "what was at place P at time T?"           at(t, near P 3 m) -> caption; right if the thing
Baseline: today's one-hour ring (world.horizon_s 3600, no pose): the same templates over the last hour only,
without place (a spatial question cannot be answered: counted wrong).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.data.vocab import ACTIONS, COLOUR_NAMES, SHAPES, canonical_caption
from perception.memory.open import open_store
from perception.memory.queries import MemoryQueries
from perception.memory.records import Batch, CaptionRow, Place, SegmentRow, unit

S = 10**9
T0 = 1_790_000_000 * S
PLACES = [(float(x), float(y)) for x in (0, 13, 26, 40) for y in (0, 20, 40)]  # 12 places
VISIT_S, TRAVEL_S, SEG_S, SWAP_S = 60, 20, 4, 7200
THINGS = [(c, s) for c in COLOUR_NAMES for s in SHAPES]
ACTS = [a for a in ACTIONS if a != "change_colour"]
MIN_SCORE = 0.6  # "the red circle" vs its captions ~0.7-0.8, vs another colour or shape < 0.45
NOISE = 0.45  # added to a unit embedding before renormalising: cosine ~0.9 to the clean one


@dataclass
class Seen:
    thing: tuple[str, str]
    place: int
    start_ns: int
    end_ns: int


def simulate(hours: float, rng: np.random.Generator) -> list[Seen]:
    at_place = [THINGS[k] for k in rng.permutation(len(THINGS))[: len(PLACES)]]
    out, t, next_swap, p = [], 0, SWAP_S, 0
    end = int(hours * 3600)
    while t < end:
        if t >= next_swap:  # each place's thing is swapped for one absent from every place
            for k in range(len(PLACES)):
                absent = [x for x in THINGS if x not in at_place]
                at_place[k] = absent[rng.integers(len(absent))]
            next_swap += SWAP_S
        for s in range(0, VISIT_S, SEG_S):
            if t + s + SEG_S > end:
                break
            out.append(Seen(at_place[p], p, T0 + (t + s) * S, T0 + (t + s + SEG_S) * S))
        t += VISIT_S + TRAVEL_S
        p = (p + 1) % len(PLACES)
    return out


def write(store, seen: list[Seen], emb: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    b = Batch()
    for k, x in enumerate(seen):
        cap = canonical_caption(*x.thing, ACTS[rng.integers(len(ACTS))])
        e = unit(emb[cap] + NOISE * rng.standard_normal(len(emb[cap])).astype(np.float32) / np.sqrt(len(emb[cap])))
        px, py = PLACES[x.place]
        pose = Place("map", px + rng.uniform(-0.5, 0.5), py + rng.uniform(-0.5, 0.5), 0.0, x.start_ns)
        b.segments.append(
            SegmentRow("r1", "front", k, x.start_ns, x.end_ns, 0.0, 4.0, [], e, pose, pose, cap)  # the true caption
        )
        b.captions.append(CaptionRow("r1", "front", k, x.start_ns, x.end_ns, cap, 0.0))
        if len(b) >= 1000:
            store.write(b)
            b = Batch()
    store.write(b)


def thing_of(caption: str | None) -> tuple[str, str] | None:
    if not caption:
        return None
    words = caption.split()
    return (words[1], words[2]) if len(words) > 2 else None


async def evaluate(queries: MemoryQueries, seen: list[Seen], n: int, rng, ring: bool) -> dict[str, float]:
    now = seen[-1].end_ns
    since = {"since_ns": now - 3600 * S} if ring else {}
    last: dict[tuple[str, str], Seen] = {}
    for x in seen:
        last[x.thing] = x
    things = list(last)
    right = {"spatial": 0, "temporal": 0, "descriptive": 0}
    for _ in range(n):
        thing = things[rng.integers(len(things))]
        gt = last[thing]
        res = (await queries.last_seen({"text": f"the {thing[0]} {thing[1]}", "min_score": MIN_SCORE, "limit": 1, **since}))["results"]  # fmt: skip
        if res and not ring:  # the ring keeps no pose
            p = res[0]["pose_end"]
            gx, gy = PLACES[gt.place]
            right["spatial"] += p is not None and np.hypot(p["x"] - gx, p["y"] - gy) <= 3.0
        if res:
            right["temporal"] += abs(res[0]["end_ns"] - gt.end_ns) <= 60 * S
        x = seen[rng.integers(len(seen))]
        t = (x.start_ns + x.end_ns) // 2
        px, py = PLACES[x.place]
        params = {"t_ns": t, "limit": 1, **since}
        if not ring:
            params["near"] = {"x": px, "y": py, "r": 3.0, "frame_id": "map"}
        elif t < now - 3600 * S:
            continue  # the ring forgot it: wrong
        res = (await queries.at(params))["results"]
        right["descriptive"] += bool(res) and thing_of(res[0]["caption"]) == x.thing
    return {k: round(v / n, 3) for k, v in right.items()}


async def main_async(a: argparse.Namespace) -> list[dict]:
    from perception.config import load_config
    from perception.nodes.models import load_model

    model, _ = load_model(load_config(None).model)
    caps = sorted({canonical_caption(c, s, act) for c, s in THINGS for act in ACTS})
    vecs = model.embed_text(caps, cache=False).float().numpy()
    emb = dict(zip(caps, vecs))
    rows = []
    for hours in a.hours:
        rng = np.random.default_rng(int(hours * 10))
        seen = simulate(hours, rng)
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(str(Path(tmp) / "navqa.db"), vecs.shape[1])
            write(store, seen, emb, rng)

            async def embed(text: str) -> np.ndarray:
                return model.embed_text([text], cache=False).float().numpy()[0]

            q = MemoryQueries(lambda s=store: s, embed)
            for name, ring in (("memory store", False), ("one-hour ring (baseline)", True)):
                acc = await evaluate(q, seen, a.questions, np.random.default_rng(1), ring)
                row = {"memory_h": hours, "segments": len(seen), "answered_by": name, **acc}
                print(json.dumps(row), flush=True)
                rows.append(row)
            store.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, nargs="+", default=[1, 8, 24])
    ap.add_argument("--questions", type=int, default=100, help="per type and memory length")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows = asyncio.run(main_async(a))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

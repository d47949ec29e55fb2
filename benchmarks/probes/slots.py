"""Quick probe of what a checkpoint has learned, per slot: `python -m benchmarks.probes.slots DIR [N]`.

Each clip's neutral-query S^_Y is matched to the nearest canonical caption among every (colour, shape,
action[, new colour]) caption of the vocabulary, and the slots of that caption are compared with the
truth, separately for held-out and training combinations (seed 123, N clips each). Used to size the tiny
preset with 170 s training probes (docs/model.md, "Training"); not one of the reported metrics.
"""

from __future__ import annotations

import sys

import torch

from perception.data.shapesworld import ShapesWorldClips, collate_clips
from perception.data.vocab import ALL_COMBOS, COLOUR_NAMES, paraphrases, parse_slots
from perception.model import VLJepa


def all_canonical_captions() -> list[str]:
    caps = []
    for c, s, a in ALL_COMBOS:
        news = [n for n in COLOUR_NAMES if n != c] if a == "change_colour" else [None]
        caps += [paraphrases(c, s, a, n)[0] for n in news]
    return caps


def probe(model: VLJepa, split: str, n: int = 128, seed: int = 123) -> dict[str, float]:
    caps = all_canonical_captions()
    E = model.embed_text(caps)  # [K,D]
    xc = model.cfg.x_encoder
    data = ShapesWorldClips(n, seed=seed, split=split, frames=xc.frames, size=xc.image_size)
    right = {"colour": 0, "shape": 0, "action": 0, "all": 0}
    for i in range(0, n, 64):
        b = collate_clips([data[j] for j in range(i, min(n, i + 64))])
        best = (model.predict(model.encode_video(b["video"]), "") @ E.T).argmax(-1)
        for k, truth in zip(best.tolist(), b["slots"]):
            got = parse_slots(caps[k])
            ok = [got.colour == truth.colour, got.shape == truth.shape, got.action == truth.action]
            for name, hit in zip(("colour", "shape", "action"), ok):
                right[name] += hit
            right["all"] += all(ok)
    return {k: round(v / n, 3) for k, v in right.items()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(1)
    model = VLJepa.load(argv[0], device="cpu", dtype="float32")
    n = int(argv[1]) if len(argv) > 1 else 128
    for split in ("heldout", "train"):
        print(split, probe(model, split, n))  # CLI user output
    return 0


if __name__ == "__main__":
    sys.exit(main())

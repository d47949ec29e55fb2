"""Contrast groups: batch rows drawn as sets of pool clips that differ in exactly one slot.

Why: in a random batch of 64 from 216 training combinations most negatives differ from a row in two or
three slots, so once colour and action separate the batch, InfoNCE has little left to say about shape, the
weak slot (docs/model.md). A contrast group is G clips that share two of (colour, shape, action) and differ
in the third (the slot drawn by `weights`): every row of it has G-1 negatives that only that slot tells
apart. The groups come from the fixed clip pool (`data.pool`), whose plans are cheap to read without
rendering; the draw is a pure function of (seed, step, rank), so resume keeps the data order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping

import numpy as np
from torch.utils.data import Sampler

from perception.data.shapesworld import sample_clip
from perception.data.vocab import Slots

SLOTS = Slots._fields  # ("colour", "shape", "action")


def slot_probabilities(weights: Mapping[str, float]) -> np.ndarray:
    """(3,) probabilities of varying each slot, from relative weights (a slot left out weighs 0)."""
    unknown = sorted(set(weights) - set(SLOTS))
    w = np.array([float(weights.get(s, 0.0)) for s in SLOTS])
    if unknown or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"contrast_weights: slots among {SLOTS}, weights >= 0, some > 0; got {dict(weights)}")
    return w / w.sum()


class ContrastIndex:
    """Pool clip indices by (colour, shape, action), and for each slot the combinations that share the
    other two: the sets a contrast group is drawn from."""

    def __init__(self, combos: list[Slots]) -> None:
        self.by_combo: dict[tuple, list[int]] = defaultdict(list)
        for i, c in enumerate(combos):
            self.by_combo[c].append(i)
        # slot k -> list of families: the combos that agree on every slot but k (at least 2 of them)
        self.families: dict[str, list[list[tuple]]] = {}
        for k, slot in enumerate(SLOTS):
            fam: dict[tuple, list] = defaultdict(list)
            for c in self.by_combo:
                fam[c[:k] + c[k + 1 :]].append(c)
            self.families[slot] = [sorted(v) for _, v in sorted(fam.items()) if len(v) >= 2]

    @classmethod
    def of_pool(cls, seed: int, pool: int, split: str = "train", max_objects: int = 3) -> ContrastIndex:
        return cls([sample_clip(seed, i, split, max_objects).slots for i in range(pool)])

    def group(self, rng: np.random.Generator, slot: str, size: int) -> list[int]:
        """Up to `size` pool indices, one per combination of a random family that varies `slot`."""
        families = self.families[slot]
        if not families:
            raise ValueError(f"the pool has no two clips that differ only in {slot}")
        family = families[int(rng.integers(len(families)))]
        chosen = rng.choice(len(family), size=min(size, len(family)), replace=False)
        out = []
        for j in sorted(chosen.tolist()):
            members = self.by_combo[family[j]]
            out.append(members[int(rng.integers(len(members)))])
        return out


class ContrastBatches(Sampler[list[int]]):
    """Wraps a step sampler: the first `rows` indices of every batch are replaced by contrast groups of
    `group_size`, the varying slot drawn with `weights` (slot -> relative weight); the rest are kept."""

    def __init__(
        self,
        base: Sampler[list[int]],
        index: ContrastIndex,
        rows: int,
        group_size: int,
        weights: Mapping[str, float],
        seed: int,
        rank: int,
        start: int,
    ) -> None:
        self.base, self.index, self.rows, self.group_size = base, index, rows, group_size
        self.p, self.seed, self.rank, self.start = slot_probabilities(weights), seed, rank, start

    def __len__(self) -> int:
        return len(self.base)

    def groups(self, step: int) -> list[list[int]]:
        """Step `step`'s contrast groups (their concatenation is the batch's first `rows` indices)."""
        rng = np.random.default_rng([self.seed, 0xC0, step, self.rank])
        out: list[list[int]] = []
        while (n := sum(map(len, out))) < self.rows:
            slot = SLOTS[int(rng.choice(len(SLOTS), p=self.p))]
            out.append(self.index.group(rng, slot, min(self.group_size, self.rows - n)))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        for step, batch in enumerate(self.base, start=self.start):
            picked = [i for g in self.groups(step) for i in g]
            yield picked + list(batch[self.rows :])

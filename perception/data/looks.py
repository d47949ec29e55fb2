"""Which objects a ShapesWorld scene may show, shared by clips (shapesworld.py) and streams (stream.py).

No torch: a live synthetic camera (perception/nodes/sources.py) plans and renders streams with numpy only.
"""

from __future__ import annotations

import numpy as np

from perception.data.vocab import COLOUR_NAMES, HELDOUT_COMBOS, SHAPES, SPLITS, Slots

MAX_OBJECTS = 3


def split_id(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {SPLITS}")
    return SPLITS.index(split)


def passive_allowed(colour: str, shape: str, split: str) -> bool:
    """May an uncaptioned, motionless object look like this in `split`? In training, not when
    (colour, shape, stay_still) is held out: a held-out combination is never *shown* in training either."""
    return split != "train" or Slots(colour, shape, "stay_still") not in HELDOUT_COMBOS


def distinct_looks(
    rng: np.random.Generator,
    n: int,
    used_colours: set[str],
    used_shapes: set[str],
    split: str,
) -> list[tuple[str, str]]:
    """Up to n (colour, shape) pairs, all colours and shapes distinct from each other and the used ones."""
    looks = []
    colours = [c for c in COLOUR_NAMES if c not in used_colours]
    shapes = [s for s in SHAPES if s not in used_shapes]
    rng.shuffle(colours)
    rng.shuffle(shapes)
    for s in shapes:
        if len(looks) == n:
            break
        for c in colours:
            if passive_allowed(c, s, split):
                looks.append((c, s))
                colours.remove(c)
                break
    return looks

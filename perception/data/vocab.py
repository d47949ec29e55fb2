"""ShapesWorld vocabulary: colours, shapes, actions, caption paraphrases, and the parser back to slots.

Everything text-shaped lives here so that generation (captions, QA) and evaluation (zero-shot labels,
caption_slot_accuracy) read the same lists. The held-out split of (colour, shape, action) combinations
is defined here too, as a fixed rule on the vocabulary order, so it never depends on a seed.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# name -> RGB. Hues far apart so colour never needs fine discrimination (even after h264 chroma loss).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 190, 60),
    "blue": (45, 90, 235),
    "yellow": (245, 225, 40),
    "purple": (160, 60, 210),
    "orange": (250, 140, 20),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

# Four silhouettes that differ in corners, concavity and symmetry, so 64 px is enough to tell them apart.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

ACTIONS: tuple[str, ...] = (
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "grow",
    "shrink",
    "appear",
    "disappear",
    "change_colour",
    "stay_still",
)

# Short verb phrases for zero-shot classification (the canonical caption uses the same phrase).
ACTION_LABELS: dict[str, str] = {
    "move_left": "moves left",
    "move_right": "moves right",
    "move_up": "moves up",
    "move_down": "moves down",
    "grow": "grows",
    "shrink": "shrinks",
    "appear": "appears",
    "disappear": "disappears",
    "change_colour": "changes colour",
    "stay_still": "stays still",
}

COUNT_WORDS: tuple[str, ...] = ("one", "two", "three")

# Paraphrase templates per action: {c} colour, {s} shape, {n} new colour (change_colour only).
# The first template is the canonical caption.
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "move_left": (
        "the {c} {s} moves left",
        "a {c} {s} slides to the left",
        "the {c} {s} is moving to the left",
        "a {c} {s} travels left",
    ),
    "move_right": (
        "the {c} {s} moves right",
        "a {c} {s} slides to the right",
        "the {c} {s} is moving to the right",
        "a {c} {s} travels right",
    ),
    "move_up": (
        "the {c} {s} moves up",
        "a {c} {s} slides upwards",
        "the {c} {s} is moving up",
        "a {c} {s} rises",
    ),
    "move_down": (
        "the {c} {s} moves down",
        "a {c} {s} slides downwards",
        "the {c} {s} is moving down",
        "a {c} {s} drops",
    ),
    "grow": (
        "the {c} {s} grows",
        "a {c} {s} gets bigger",
        "the {c} {s} is growing",
        "a {c} {s} expands",
    ),
    "shrink": (
        "the {c} {s} shrinks",
        "a {c} {s} gets smaller",
        "the {c} {s} is shrinking",
        "a {c} {s} contracts",
    ),
    "appear": (
        "a {c} {s} appears",
        "the {c} {s} comes into view",
        "a {c} {s} shows up",
        "a {c} {s} pops into the scene",
    ),
    "disappear": (
        "the {c} {s} disappears",
        "a {c} {s} vanishes",
        "the {c} {s} goes out of view",
        "a {c} {s} leaves the scene",
    ),
    "change_colour": (
        "the {c} {s} turns {n}",
        "a {c} {s} changes colour to {n}",
        "the {c} {s} becomes {n}",
        "a {c} {s} switches to {n}",
    ),
    "stay_still": (
        "the {c} {s} stays still",
        "a {c} {s} does not move",
        "the {c} {s} remains still",
        "a {c} {s} sits still",
    ),
}

# Phrases the parser looks for, most specific first. Includes every template's verb phrase.
_ACTION_PATTERNS: tuple[tuple[str, str], ...] = (
    ("change_colour", r"\b(turns|changes colou?r|becomes|switches to)\b"),
    ("stay_still", r"\b(stays still|does not move|doesn't move|remains still|sits still|still)\b"),
    ("disappear", r"\b(disappears|vanishes|out of view|leaves)\b"),
    ("appear", r"\b(appears|comes into view|shows up|pops)\b"),  # before move_up: "shows up"
    ("grow", r"\b(grows|growing|bigger|expands)\b"),
    ("shrink", r"\b(shrinks|shrinking|smaller|contracts)\b"),
    ("move_left", r"\bleft\b"),
    ("move_right", r"\bright\b"),
    ("move_up", r"\b(up|upwards|rises)\b"),
    ("move_down", r"\b(down|downwards|drops)\b"),
)
_COLOUR_RE = re.compile(r"\b(" + "|".join(COLOUR_NAMES) + r")\b")
_SHAPE_RE = re.compile(r"\b(" + "|".join(SHAPES) + r")s?\b")


class Slots(NamedTuple):
    """What a caption says; compares equal to a plain (colour, shape, action) tuple."""

    colour: str
    shape: str
    action: str


def paraphrases(colour: str, shape: str, action: str, new_colour: str | None = None) -> list[str]:
    """Every caption paraphrase of one event; the first is canonical."""
    _check(colour, shape, action)
    if action == "change_colour" and new_colour not in COLOURS:
        raise ValueError(f"change_colour needs new_colour, one of {COLOUR_NAMES}; got {new_colour!r}")
    return [t.format(c=colour, s=shape, n=new_colour) for t in _TEMPLATES[action]]


def canonical_caption(colour: str, shape: str, action: str, new_colour: str | None = None) -> str:
    return paraphrases(colour, shape, action, new_colour)[0]


def action_label_texts() -> list[str]:
    """Zero-shot class texts, in ACTIONS order ("moves left", ..., "stays still")."""
    return [ACTION_LABELS[a] for a in ACTIONS]


def parse_slots(text: str) -> Slots | None:
    """Read a caption (any paraphrase, or a decoder's approximation) back into slots.

    The first colour word is the object's colour (a change_colour target comes after it), the first
    shape word its shape, and the action is the first verb-phrase pattern that matches after the shape.
    None when any slot cannot be found.
    """
    lowered = text.lower()
    colour = _COLOUR_RE.search(lowered)
    shape = _SHAPE_RE.search(lowered)
    if colour is None or shape is None:
        return None
    rest = lowered[shape.end() :]
    for action, pattern in _ACTION_PATTERNS:
        if re.search(pattern, rest):
            return Slots(colour.group(1), shape.group(1), action)
    return None


def parse_new_colour(text: str) -> str | None:
    """The target colour of a change_colour caption (the colour word after the shape), else None."""
    lowered = text.lower()
    shape = _SHAPE_RE.search(lowered)
    if shape is None:
        return None
    target = _COLOUR_RE.search(lowered, shape.end())
    return target.group(1) if target else None


def _check(colour: str, shape: str, action: str) -> None:
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; valid: {COLOUR_NAMES}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; valid: {SHAPES}")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; valid: {ACTIONS}")


# --- the held-out split -------------------------------------------------------------------------------
# (colour, shape, action) is held out when (colour_index + 3 * shape_index + 7 * action_index) % 10 == 0.
# For every (colour, shape) pair exactly one action is held out (24 of 240 combinations, 10 %), and every
# (colour, action) and (shape, action) pair keeps training examples, so held-out combos are new
# compositions of parts the model has all seen.
def _is_heldout(colour: str, shape: str, action: str) -> bool:
    ci, si, ai = COLOUR_NAMES.index(colour), SHAPES.index(shape), ACTIONS.index(action)
    return (ci + 3 * si + 7 * ai) % 10 == 0


ALL_COMBOS: tuple[Slots, ...] = tuple(Slots(c, s, a) for c in COLOUR_NAMES for s in SHAPES for a in ACTIONS)
HELDOUT_COMBOS: frozenset[Slots] = frozenset(x for x in ALL_COMBOS if _is_heldout(*x))
TRAIN_COMBOS: frozenset[Slots] = frozenset(ALL_COMBOS) - HELDOUT_COMBOS
# "heldout" is the test split: only reported, never used to choose anything. "val" draws the same unseen
# combinations from its own random streams (the split's index is part of every clip's and stream's seed,
# so no val clip or stream is a test one): every choice of recipe, hyper-parameter and checkpoint is made
# on it. Appended last so that the train and heldout sequences are unchanged.
SPLITS = ("train", "heldout", "val")
TEST_SPLIT, VAL_SPLIT = "heldout", "val"


def combos_for(split: str) -> frozenset[Slots]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {SPLITS}")
    return TRAIN_COMBOS if split == "train" else HELDOUT_COMBOS

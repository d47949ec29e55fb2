"""Question/answer pairs for one ShapesWorld clip: colour, shape, count and POPE-style presence.

Every question carries its closed candidate set so evaluation can answer discriminatively (nearest
candidate embedding). Presence questions come in balanced pairs, one "yes" and one "no"; half of the
negatives are adversarial (they share the colour or the shape of something in the scene), as in POPE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from perception.data.vocab import COLOUR_NAMES, COUNT_WORDS, SHAPES, Slots

QA_KINDS = ("colour", "shape", "count", "presence")
YES_NO = ("yes", "no")


@dataclass(frozen=True)
class QA:
    kind: str  # one of QA_KINDS
    question: str
    answer: str
    candidates: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self) | {"candidates": list(self.candidates)}


def clip_questions(
    rng: np.random.Generator,
    main: Slots,
    new_colour: str | None,
    seen: set[tuple[str, str]],
    count: int,
) -> list[QA]:
    """QA for a clip whose acting object is `main`; `seen` holds every (colour, shape) visible at any
    frame, `count` the number of distinct objects visible at any frame."""
    colour, shape, action = main
    if action == "change_colour":
        q_colour = QA("colour", f"what colour does the {shape} turn?", str(new_colour), COLOUR_NAMES)
    else:
        q_colour = QA("colour", f"what colour is the {shape}?", colour, COLOUR_NAMES)
    qas = [
        q_colour,
        QA("shape", f"what shape is the {colour} object?", shape, SHAPES),
        QA("count", "how many shapes are there?", COUNT_WORDS[count - 1], COUNT_WORDS),
    ]
    present = sorted(seen)
    c_yes, s_yes = present[int(rng.integers(len(present)))]
    qas.append(QA("presence", f"is there a {c_yes} {s_yes}?", "yes", YES_NO))
    absent = [(c, s) for c in COLOUR_NAMES for s in SHAPES if (c, s) not in seen]
    seen_colours = {c for c, _ in seen}
    seen_shapes = {s for _, s in seen}
    adversarial = [(c, s) for c, s in absent if c in seen_colours or s in seen_shapes]
    pool = adversarial if adversarial and rng.random() < 0.5 else absent
    c_no, s_no = pool[int(rng.integers(len(pool)))]
    qas.append(QA("presence", f"is there a {c_no} {s_no}?", "no", YES_NO))
    return qas

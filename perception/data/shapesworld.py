"""ShapesWorld clips: deterministic procedural videos of coloured shapes doing one captioned action.

`sample_clip(seed, index, split)` depends only on its arguments (a numpy SeedSequence of
(seed, split, index)), so any DDP rank or DataLoader worker can produce any index without coordination.
The plan (objects, action) is resolution-free; `ClipSpec.render(frames, size)` rasterises it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from perception.data import render as raster
from perception.data import scene
from perception.data.looks import MAX_OBJECTS, distinct_looks, passive_allowed, split_id
from perception.data.qa import QA, clip_questions
from perception.data.scene import Action, ObjectState
from perception.data.vocab import COLOUR_NAMES, Slots, combos_for, paraphrases

CLIP_EVENT_RANGE = (0.25, 0.75)  # appear / disappear / change_colour happen inside this fraction


@dataclass(frozen=True)
class ClipSpec:
    """A clip's full plan: start state, the one action, and text. Rendering is separate (any size)."""

    seed: int
    index: int
    split: str
    objects: tuple[ObjectState, ...]  # start state; objects[action.target] is the main object
    action: Action
    bg_seed: int
    slots: Slots
    new_colour: str | None
    captions: tuple[str, ...]
    qa: tuple[QA, ...]
    count: int  # distinct objects visible at some point of the clip

    @property
    def caption(self) -> str:
        return self.captions[0]

    def render(self, frames: int = 8, size: int = 64) -> np.ndarray:
        """uint8 [T, H, W, 3]; frame i shows progress i / (T - 1) of the action."""
        if frames < 2:
            raise ValueError(f"a clip needs at least 2 frames, got {frames}")
        if size < 16:
            raise ValueError(f"image size must be >= 16 px, got {size}")
        bg = raster.background(np.random.default_rng(self.bg_seed), size)
        out = np.empty((frames, size, size, 3), dtype=np.uint8)  # [T, H, W, 3]
        for i in range(frames):
            state = scene.state_at(self.objects, self.action, i / (frames - 1))
            out[i] = raster.render(bg, scene.drawables(state))
        return out


@dataclass
class Clip:
    """A rendered clip plus its labels (what the Dataset hands out, before tensor conversion)."""

    spec: ClipSpec
    frames: np.ndarray = field(repr=False)  # [T, H, W, 3] uint8


def sample_clip(seed: int, index: int, split: str = "train", max_objects: int = MAX_OBJECTS) -> ClipSpec:
    """Plan clip `index` of the (seed, split) sequence. Deterministic; no global RNG is touched."""
    if not 1 <= max_objects <= MAX_OBJECTS:
        raise ValueError(f"max_objects must be in 1..{MAX_OBJECTS}, got {max_objects}")
    rng = np.random.default_rng([seed, split_id(split), index])
    combos = sorted(combos_for(split))
    colour, shape, kind = combos[int(rng.integers(len(combos)))]
    new_colour = None
    if kind == "change_colour":
        targets = [c for c in COLOUR_NAMES if c != colour and passive_allowed(c, shape, split)]
        new_colour = targets[int(rng.integers(len(targets)))]

    # The main object and a feasible action for it (rejection sampling; the frame is roomy enough that
    # this succeeds within a few tries, and the last resort shrinks the move).
    main = action = None
    for _ in range(200):
        cand = ObjectState(shape, colour, 0.5, 0.5, scene.start_radius(rng, kind), visible=kind != "appear")
        cand = scene.place(rng, cand, ())
        if cand is None:
            continue
        act = scene.random_action(rng, (cand,), kind, 0, new_colour, CLIP_EVENT_RANGE)
        if scene.feasible((cand,), act):
            main, action = cand, act
            break
    if main is None or action is None:  # pragma: no cover - would mean the geometry constants are wrong
        raise RuntimeError(f"could not plan {kind} for clip {index}")

    objects: list[ObjectState] = [main]
    n_extra = int(rng.integers(max_objects))  # 0 .. max_objects-1 distractors
    if kind == "stay_still":
        # With a distractor every object is still and "the red circle stays still" names one of them at
        # random: no model could resolve the subject. Drawn above anyway, so other clips are unchanged.
        n_extra = 0
    used_colours = {colour} | ({new_colour} if new_colour else set())
    for c, s in distinct_looks(rng, n_extra, used_colours, {shape}, split):
        obj = ObjectState(s, c, 0.5, 0.5, scene.start_radius(rng, "stay_still"))
        for _ in range(30):
            placed = scene.place(rng, obj, tuple(objects[1:]), tries=1)
            if placed is not None and scene.clear_of_path(placed, main, action):
                objects.append(placed)
                break
    # Shuffle draw order so the main object is not always index 0 in any positional sense.
    order = rng.permutation(len(objects))
    objects = [objects[i] for i in order]
    target = int(np.flatnonzero(order == 0)[0])
    action = Action(action.kind, target, action.dx, action.dy, action.r_end, action.new_colour, action.event_at)

    seen = {(o.colour, o.shape) for o in objects}
    if new_colour:
        seen.add((new_colour, shape))
    slots = Slots(colour, shape, kind)
    caps = paraphrases(colour, shape, kind, new_colour)
    qa = clip_questions(rng, slots, new_colour, seen, len(objects))
    return ClipSpec(
        seed=seed,
        index=index,
        split=split,
        objects=tuple(objects),
        action=action,
        bg_seed=int(rng.integers(2**63)),
        slots=slots,
        new_colour=new_colour,
        captions=tuple(caps),
        qa=tuple(qa),
        count=len(objects),
    )


def make_clip(seed: int, index: int, split: str = "train", frames: int = 8, size: int = 64) -> Clip:
    spec = sample_clip(seed, index, split)
    return Clip(spec, spec.render(frames, size))


class ShapesWorldClips(torch.utils.data.Dataset):
    """Map-style dataset of `length` clips; item i is a pure function of (seed, split, i).

    Items: {"video": uint8 [T, C, H, W], "caption", "captions", "slots", "new_colour", "qa", "count",
    "index"}. Batch them with `collate_clips`.
    """

    def __init__(
        self,
        length: int,
        seed: int = 0,
        split: str = "train",
        frames: int = 8,
        size: int = 64,
        max_objects: int = MAX_OBJECTS,
    ) -> None:
        split_id(split)
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.length, self.seed, self.split = length, seed, split
        self.frames, self.size, self.max_objects = frames, size, max_objects

    def __len__(self) -> int:
        return self.length

    def spec(self, index: int) -> ClipSpec:
        if not 0 <= index < self.length:
            raise IndexError(f"clip index {index} out of range for a dataset of {self.length}")
        return sample_clip(self.seed, index, self.split, self.max_objects)

    def __getitem__(self, index: int) -> dict:
        spec = self.spec(index)
        return training_item(
            spec.render(self.frames, self.size), spec.captions, spec.slots, spec.new_colour, spec.qa, spec.count, index
        )


def training_item(frames: np.ndarray, captions, slots, new_colour, qa, count: int, index: int) -> dict:
    """The item every training dataset yields (frames uint8 [T, H, W, 3]); `collate_clips` batches them."""
    return {
        "video": torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(),  # [T, C, H, W]
        "caption": captions[0],
        "captions": list(captions),
        "slots": slots,
        "new_colour": new_colour,
        "qa": [q.to_dict() for q in qa],
        "count": count,
        "index": index,
    }


def collate_clips(batch: list[dict]) -> dict:
    """Stack videos to [B, T, C, H, W]; every other field becomes a list of length B."""
    out: dict = {"video": torch.stack([b["video"] for b in batch])}
    for key in batch[0]:
        if key != "video":
            out[key] = [b[key] for b in batch]
    return out

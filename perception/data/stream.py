"""ShapesWorld streams: 30-120 s of continuous video made of timed, captioned segments.

Segment durations are uniform in [1, 8] s (docs/architecture.md#evaluation). Each segment is one action of one
object, starting from the previous segment's end state, so the video is continuous across boundaries.
Instantaneous actions (appear, disappear, change_colour) happen at the segment's midpoint.

Everything is planned up front (cheap: a few hundred small dataclasses); `frame_at(i)` then renders any
frame independently in well under a millisecond at 64 px, which is what a live synthetic camera needs.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from perception.data import render as raster
from perception.data import scene
from perception.data.looks import MAX_OBJECTS, distinct_looks, passive_allowed, split_id
from perception.data.scene import Action, ObjectState
from perception.data.vocab import ACTIONS, COLOUR_NAMES, HELDOUT_COMBOS, Slots, combos_for, paraphrases

SEGMENT_SECONDS = (1.0, 8.0)
STREAM_SECONDS = (30.0, 120.0)


@dataclass(frozen=True)
class Segment:
    """One captioned action over [start_s, end_s) of the stream."""

    start_s: float
    end_s: float
    slots: Slots
    new_colour: str | None
    captions: tuple[str, ...]
    objects: tuple[ObjectState, ...]  # state at start_s (including an object about to appear)
    action: Action

    @property
    def caption(self) -> str:
        return self.captions[0]

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def ambiguous(self) -> bool:
        """No model could resolve the caption's subject: every object is still and more than one is in view.

        Such segments are excluded (and counted) wherever captions are scored or taught (docs/model.md,
        "The evaluation protocol")."""
        return self.slots.action == "stay_still" and sum(o.visible for o in self.objects) > 1

    @property
    def event_s(self) -> float:
        """When the change is visible: the midpoint (instantaneous actions happen exactly then)."""
        return self.start_s + self.action.event_at * self.duration_s

    def to_dict(self) -> dict:
        return {
            "start": self.start_s,
            "end": self.end_s,
            "text": self.caption,
            "captions": list(self.captions),
            "slots": list(self.slots),
            "new_colour": self.new_colour,
        }


class ShapesStream:
    """A planned stream; `frame_at(i)` renders frame i (uint8 [H, W, 3]) at time i / fps.

    `duration_s` is a minimum: segments are drawn until their total reaches it (None: uniform in
    30-120 s). In the "heldout" split each segment uses a held-out combination whenever one is feasible
    in the current scene; in "train" no held-out combination is ever captioned or shown.
    """

    def __init__(
        self,
        seed: int = 0,
        split: str = "train",
        duration_s: float | None = None,
        fps: float = 30.0,
        size: int = 64,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if size < 16:
            raise ValueError(f"image size must be >= 16 px, got {size}")
        rng = np.random.default_rng([seed, split_id(split), 0x5743])
        if duration_s is None:
            duration_s = float(rng.uniform(*STREAM_SECONDS))
        if duration_s <= 0:
            raise ValueError(f"duration_s must be > 0, got {duration_s}")
        self.seed, self.split, self.fps, self.size = seed, split, float(fps), size
        self.segments: list[Segment] = _plan(rng, split, duration_s)
        self._starts = [s.start_s for s in self.segments]
        self.duration_s = self.segments[-1].end_s
        self.num_frames = int(np.floor(self.duration_s * self.fps))
        self._bg = raster.background(np.random.default_rng(int(rng.integers(2**63))), size)

    def __len__(self) -> int:
        return self.num_frames

    def time_of(self, i: int) -> float:
        return i / self.fps

    def segment_at(self, t_s: float) -> Segment:
        """The segment showing at time t_s (clamped to the stream)."""
        k = bisect.bisect_right(self._starts, t_s) - 1
        return self.segments[min(max(k, 0), len(self.segments) - 1)]

    def frame_at(self, i: int) -> np.ndarray:
        """Frame i, uint8 [H, W, 3]."""
        if not 0 <= i < self.num_frames:
            raise IndexError(f"frame {i} out of range for a stream of {self.num_frames} frames")
        t = self.time_of(i)
        seg = self.segment_at(t)
        p = (t - seg.start_s) / seg.duration_s
        return raster.render(self._bg, scene.drawables(scene.state_at(seg.objects, seg.action, p)))

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.num_frames):
            yield self.frame_at(i)

    def frames(self, start: int, stop: int, step: int = 1) -> np.ndarray:
        """uint8 [T, H, W, 3] for frames range(start, stop, step) (a sliding window)."""
        return np.stack([self.frame_at(i) for i in range(start, stop, step)])


def _spawn_looks(rng, objects, split, n):
    return distinct_looks(rng, n, {o.colour for o in objects}, {o.shape for o in objects}, split)


def _initial_objects(rng: np.random.Generator, split: str) -> tuple[ObjectState, ...]:
    objects: tuple[ObjectState, ...] = ()
    for c, s in _spawn_looks(rng, (), split, int(rng.integers(1, MAX_OBJECTS + 1))):
        placed = scene.place(rng, ObjectState(s, c, 0.5, 0.5, scene.start_radius(rng, "stay_still")), objects)
        if placed is not None:
            objects += (placed,)
    return objects


def _try_action(
    rng: np.random.Generator,
    objects: tuple[ObjectState, ...],
    kind: str,
    split: str,
) -> tuple[tuple[ObjectState, ...], Action, str | None] | None:
    """A feasible (start objects, action, new colour) for `kind` in this scene, or None."""
    new_colour = None
    if kind == "appear":
        if len(objects) >= MAX_OBJECTS:
            return None
        looks = _spawn_looks(rng, objects, split, 1)
        if not looks:
            return None
        c, s = looks[0]
        placed = scene.place(
            rng, ObjectState(s, c, 0.5, 0.5, scene.start_radius(rng, "stay_still"), visible=False), objects
        )
        if placed is None:
            return None
        objects = objects + (placed,)
        target = len(objects) - 1
    else:
        if not objects or (kind == "disappear" and len(objects) < 2):
            return None  # the scene never goes empty
        target = int(rng.integers(len(objects)))
        if kind == "change_colour":
            obj = objects[target]
            used = {o.colour for o in objects}
            options = [c for c in COLOUR_NAMES if c not in used and passive_allowed(c, obj.shape, split)]
            if not options:
                return None
            new_colour = options[int(rng.integers(len(options)))]
    action = scene.random_action(rng, objects, kind, target, new_colour)
    if not scene.feasible(objects, action):
        return None
    return objects, action, new_colour


def _plan(rng: np.random.Generator, split: str, duration_s: float) -> list[Segment]:
    allowed = combos_for(split)
    objects = _initial_objects(rng, split)
    segments: list[Segment] = []
    t = 0.0
    while t < duration_s:
        seg_len = float(rng.uniform(*SEGMENT_SECONDS))
        chosen = None
        for attempt in range(60):
            kind = ACTIONS[int(rng.integers(len(ACTIONS)))]
            found = _try_action(rng, objects, kind, split)
            if found is None:
                continue
            start_objs, action, new_colour = found
            actor = start_objs[action.target]
            slots = Slots(actor.colour, actor.shape, kind)
            if slots not in allowed and (split == "train" or attempt < 40):
                continue  # train: never a held-out combo; heldout: prefer held-out combos
            chosen = (start_objs, action, new_colour, slots)
            break
        if chosen is None:  # a still segment is always possible and always allowed
            target = int(rng.integers(len(objects)))
            actor = objects[target]
            chosen = (objects, Action("stay_still", target), None, Slots(actor.colour, actor.shape, "stay_still"))
            assert split != "train" or chosen[3] not in HELDOUT_COMBOS, "spawn rule keeps still combos legal"
        start_objs, action, new_colour, slots = chosen
        segments.append(
            Segment(
                start_s=t,
                end_s=t + seg_len,
                slots=slots,
                new_colour=new_colour,
                captions=tuple(paraphrases(*slots, new_colour)),
                objects=start_objs,
                action=action,
            )
        )
        objects = scene.end_state(start_objs, action)
        t += seg_len
    return segments

"""Scene state and actions: what every object looks like at any moment of a clip or stream segment.

A scene is a tuple of ObjectState; one Action changes one object over a segment, parametrised by the
segment's progress p in [0, 1]. Clips are one segment; streams chain segments, each starting from the
previous one's end state, so rendering is continuous and `state_at(p)` is a pure, cheap function.
The planners here place objects and choose action parameters so that objects stay inside the frame and
never overlap (occlusion would make the shape slot unreadable).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from perception.data.render import Drawable

R_BASE = (0.11, 0.15)  # radius (fraction of the side) of an object that is not growing or shrinking
R_SMALL = (0.085, 0.105)  # start of "grow", end of "shrink"
SIZE_RATIO = (1.6, 1.9)  # r_end / r_start for grow (inverse for shrink): area changes >= 2.5x
MOVE_DIST = (0.22, 0.36)  # distance travelled by a move, fraction of the side
MARGIN = 0.02  # min gap between an object and the frame edge
GAP = 0.04  # min gap between two objects' bounding circles
_CHECK_POINTS = np.linspace(0.0, 1.0, 9)


@dataclass(frozen=True)
class ObjectState:
    shape: str
    colour: str
    x: float
    y: float
    r: float
    visible: bool = True

    def drawable(self) -> Drawable:
        return Drawable(self.shape, self.colour, self.x, self.y, self.r)


@dataclass(frozen=True)
class Action:
    """`kind` applied to objects[target]; event_at is when an instantaneous change happens (fraction)."""

    kind: str
    target: int
    dx: float = 0.0
    dy: float = 0.0
    r_end: float | None = None
    new_colour: str | None = None
    event_at: float = 0.5


def object_at(obj: ObjectState, action: Action, p: float) -> ObjectState:
    """The acting object at progress p in [0, 1] of its segment."""
    kind = action.kind
    if kind.startswith("move_"):
        return replace(obj, x=obj.x + action.dx * p, y=obj.y + action.dy * p)
    if kind in ("grow", "shrink"):
        assert action.r_end is not None, "grow/shrink need r_end"
        return replace(obj, r=obj.r + (action.r_end - obj.r) * p)
    if kind == "appear":
        return replace(obj, visible=p >= action.event_at)
    if kind == "disappear":
        return replace(obj, visible=p < action.event_at)
    if kind == "change_colour":
        assert action.new_colour is not None, "change_colour needs new_colour"
        return replace(obj, colour=action.new_colour) if p >= action.event_at else obj
    return obj  # stay_still


def state_at(objects: tuple[ObjectState, ...], action: Action, p: float) -> tuple[ObjectState, ...]:
    return tuple(object_at(o, action, p) if i == action.target else o for i, o in enumerate(objects))


def end_state(objects: tuple[ObjectState, ...], action: Action) -> tuple[ObjectState, ...]:
    """State after the segment, with objects that have disappeared removed."""
    return tuple(o for o in state_at(objects, action, 1.0) if o.visible)


def drawables(objects: tuple[ObjectState, ...]) -> list[Drawable]:
    return [o.drawable() for o in objects if o.visible]


def _in_frame(o: ObjectState) -> bool:
    lo, hi = o.r + MARGIN, 1.0 - o.r - MARGIN
    return lo <= o.x <= hi and lo <= o.y <= hi


def _apart(a: ObjectState, b: ObjectState) -> bool:
    return (a.x - b.x) ** 2 + (a.y - b.y) ** 2 >= (a.r + b.r + GAP) ** 2


def feasible(objects: tuple[ObjectState, ...], action: Action) -> bool:
    """The acting object stays in frame and clear of every other object during the whole segment."""
    others = [o for i, o in enumerate(objects) if i != action.target]
    for p in _CHECK_POINTS:
        moving = object_at(objects[action.target], action, float(p))
        if not _in_frame(moving) or not all(_apart(moving, o) for o in others):
            return False
    return True


def random_action(
    rng: np.random.Generator,
    objects: tuple[ObjectState, ...],
    kind: str,
    target: int,
    new_colour: str | None = None,
    event_range: tuple[float, float] = (0.5, 0.5),
) -> Action:
    """Draw parameters for `kind` (not checked: call `feasible`)."""
    event_at = float(rng.uniform(*event_range))
    dist = float(rng.uniform(*MOVE_DIST))
    dx, dy = {
        "move_left": (-dist, 0.0),
        "move_right": (dist, 0.0),
        "move_up": (0.0, -dist),
        "move_down": (0.0, dist),
    }.get(kind, (0.0, 0.0))
    r = objects[target].r
    r_end = None
    if kind == "grow":
        r_end = r * float(rng.uniform(*SIZE_RATIO))
    elif kind == "shrink":
        r_end = r / float(rng.uniform(*SIZE_RATIO))
    return Action(kind, target, dx=dx, dy=dy, r_end=r_end, new_colour=new_colour, event_at=event_at)


def start_radius(rng: np.random.Generator, kind: str) -> float:
    """Radius for a fresh object about to do `kind` (small before growing, large before shrinking)."""
    if kind == "grow":
        return float(rng.uniform(*R_SMALL))
    if kind == "shrink":
        return float(rng.uniform(*R_SMALL)) * float(rng.uniform(*SIZE_RATIO))
    return float(rng.uniform(*R_BASE))


def place(
    rng: np.random.Generator,
    obj: ObjectState,
    objects: tuple[ObjectState, ...],
    tries: int = 40,
) -> ObjectState | None:
    """obj moved to a random spot inside the frame and clear of `objects`, or None if none was found."""
    lo, hi = obj.r + MARGIN, 1.0 - obj.r - MARGIN
    if lo > hi:
        return None
    for _ in range(tries):
        cand = replace(obj, x=float(rng.uniform(lo, hi)), y=float(rng.uniform(lo, hi)))
        if all(_apart(cand, o) for o in objects):
            return cand
    return None


def clear_of_path(obj: ObjectState, actor: ObjectState, action: Action) -> bool:
    """obj stays clear of `actor` along the whole of `action` (used to place distractors around it)."""
    return all(_apart(obj, object_at(actor, action, float(p))) for p in _CHECK_POINTS)

"""What the memory stores and what a query asks, engine-independent (dataclasses; the engines map them to SQL).

Rows carry the robot that perceived them, so many robots' world nodes can write one database. Times are
wall-clock ns since the epoch, as on the bus. A place is a pose in a named fixed frame ("map"); a segment
carries the pose at its start and end (joined by time from pose/<cam>), or none if the camera had none.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Place:
    """Where the robot was (from a `Pose` message), planar: what place queries use."""

    frame_id: str
    x: float
    y: float
    yaw: float
    stamp_ns: int


@dataclass
class SegmentRow:
    robot: str
    camera: str
    segment_id: int
    start_ns: int
    end_ns: int
    start_s: float
    end_s: float
    labels: list[dict[str, Any]]  # [{label, score}], best first
    embedding: np.ndarray | None  # unit float32 [D]: the segment mean S^_Y
    pose_start: Place | None = None
    pose_end: Place | None = None
    caption: str | None = None


@dataclass
class CaptionRow:
    robot: str
    camera: str
    segment_id: int
    start_ns: int
    end_ns: int
    text: str
    latency_ms: float


@dataclass
class WatchRow:
    """One crossing of a watch phrase (active: rose above `enter`; else fell below `leave`)."""

    robot: str
    camera: str
    segment_id: int
    start_ns: int
    end_ns: int
    watch: str
    watch_id: str | None
    active: bool
    score: float
    pose: Place | None = None


@dataclass
class WindowRow:
    robot: str
    camera: str
    end_ns: int
    embedding: np.ndarray  # unit float32 [D]


@dataclass
class Batch:
    """What the writer commits in one transaction."""

    segments: list[SegmentRow] = field(default_factory=list)
    captions: list[CaptionRow] = field(default_factory=list)
    watches: list[WatchRow] = field(default_factory=list)
    windows: list[WindowRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.segments) + len(self.captions) + len(self.watches) + len(self.windows)

    def extend(self, other: Batch) -> None:
        self.segments += other.segments
        self.captions += other.captions
        self.watches += other.watches
        self.windows += other.windows


@dataclass(frozen=True)
class Near:
    """Within `r` metres of (x, y) in `frame_id` (None: any frame)."""

    x: float
    y: float
    r: float
    frame_id: str | None = None


@dataclass
class Query:
    """Filters combine (AND). With `embedding` (the query text's S_Y) segments are scored by cosine; `order`
    "score" ranks by it, "recent" returns the newest matches first (with `min_score`: "last seen")."""

    embedding: np.ndarray | None = None
    text: str | None = None  # kept for the answer's evidence
    since_ns: int | None = None  # segments that end at or after
    until_ns: int | None = None  # segments that start at or before
    near: Near | None = None
    robot: str | None = None
    camera: str | None = None
    min_score: float | None = None
    order: Literal["score", "recent"] = "score"
    limit: int = 10


@dataclass
class Hit:
    """One answer with its evidence: what, when, where, who saw it, how well it matched."""

    id: int  # the row id in the store: `perception memory show ID`
    robot: str
    camera: str
    segment_id: int
    start_ns: int
    end_ns: int
    start_s: float
    end_s: float
    labels: list[dict[str, Any]]
    caption: str | None
    pose_start: Place | None
    pose_end: Place | None
    score: float | None = None  # cosine(query text, segment mean); None without text
    distance_m: float | None = None  # to the place asked about (nearer of start/end pose)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.score is not None:
            d["score"] = round(self.score, 4)
        if self.distance_m is not None:
            d["distance_m"] = round(self.distance_m, 3)
        return d


@dataclass
class Span:
    """A watch phrase's active span: from its rise to its fall (None while still active)."""

    robot: str
    camera: str
    watch: str
    start_ns: int
    end_ns: int | None
    duration_s: float | None
    pose: Place | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def place_distance(p: Place | None, near: Near) -> float | None:
    if p is None or (near.frame_id is not None and p.frame_id != near.frame_id):
        return None
    return math.hypot(p.x - near.x, p.y - near.y)


def unit(emb: np.ndarray) -> np.ndarray:
    """float32, unit L2 norm (a zero vector stays zero): cosine is then a dot product in every engine."""
    emb = np.asarray(emb, dtype=np.float32)
    n = float(np.linalg.norm(emb))
    return emb / n if n > 0 else emb

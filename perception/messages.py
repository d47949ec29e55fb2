"""Every message the perception service puts on the bus, registered with the bus codec by type name.

Topics (docs/architecture.md): frames/<cam>, truth/<cam>, embeddings/<cam>, events/<cam>, decode/<cam>,
captions/<cam>, pose/<cam>, watches/all, stats/<node>. Times that leave a process are wall-clock ns since the epoch
(`*_ns`); a message carries the capture time of the newest frame it depends on (`t_capture_ns`), so
any node can report the latency from the camera to itself.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bus.message import Message, register

# Integers that leave a process fit int64, as a C, Node.js or msgpack reader expects (and as numpy and
# our own replies can carry them: an id of 2**64-1 made `id + 1` unpackable in the world's replies).
Id = Annotated[int, Field(ge=0, lt=2**62)]
Ns = Annotated[int, Field(ge=-(2**63), lt=2**63)]


@register
class Frame(Message):
    """One camera image, uint8 [H, W, 3] RGB, with its capture time and index in the camera's stream."""

    TYPE: ClassVar[str] = "Frame"
    cam: str
    index: Id  # frame number from the source's start (gaps mean frames were skipped)
    t_capture_ns: Ns  # wall clock when the frame was captured (synthetic: when it was rendered)
    stream_s: float = 0.0  # position in the source (file / synthetic stream time), seconds
    image: np.ndarray

    def __str__(self) -> str:
        return f"Frame({self.cam} #{self.index} {self.image.shape[1]}x{self.image.shape[0]} t={self.stream_s:.2f}s)"


@register
class GroundTruthSegment(Message):
    """A synthetic source's known segment, published on truth/<cam> for evaluation when it starts."""

    TYPE: ClassVar[str] = "GroundTruthSegment"
    cam: str
    segment_id: Id
    start_s: float  # stream time
    end_s: float
    t0_ns: Ns  # wall clock of stream time 0, so stream times map onto capture times
    text: str
    slots: list[str]  # [colour, shape, action]


@register
class Embedding(Message):
    """The predicted text embedding S^_Y (L2-normalised, float32 [D]) of one sliding window."""

    TYPE: ClassVar[str] = "Embedding"
    cam: str
    window: Id  # window number for this camera
    start_ns: Ns  # capture time of the window's first frame
    end_ns: Ns  # capture time of the window's last frame (= t_capture_ns)
    start_s: float = 0.0  # stream times of the same frames
    end_s: float = 0.0
    model_id: str
    t_capture_ns: Ns
    t_done_ns: Ns = 0  # wall clock when the model finished this window
    embedding: np.ndarray

    def __str__(self) -> str:
        return f"Embedding({self.cam} w{self.window} {self.start_s:.2f}-{self.end_s:.2f}s D={self.embedding.shape[-1]})"


class LabelScore(BaseModel):
    """One open-vocabulary label and its cosine similarity (a field of Event, not a message of its own)."""

    model_config = ConfigDict(extra="forbid")
    label: str
    score: float


@register
class Event(Message):
    """A semantic event on events/<cam>: a closed segment (`segment`) or a watch label crossing (`watch`)."""

    TYPE: ClassVar[str] = "Event"
    cam: str
    kind: Literal["segment", "watch"]
    segment_id: Id  # for `watch`: the segment the crossing happened in
    start_ns: Ns  # capture-time span covered (watch: the window that crossed)
    end_ns: Ns
    start_s: float = 0.0
    end_s: float = 0.0
    labels: list[LabelScore] = Field(default_factory=list)  # top labels of the segment mean (segment)
    watch: str | None = None  # the watched phrase (watch)
    active: bool | None = None  # True: rose above `on`; False: fell below `off` (watch)
    # the watch that crossed (watch): "config:<label>" for `pipeline.events.watch`, "w-<hex>" for one added
    # at run time through the world's `watch` RPC
    watch_id: str | None = None
    t_capture_ns: Ns = 0
    embedding: np.ndarray | None = None  # segment-mean S^_Y (segment) or the window's S^_Y (watch)

    def __str__(self) -> str:
        if self.kind == "watch":
            return f"Event({self.cam} watch {self.watch!r} {'on' if self.active else 'off'} @{self.end_s:.2f}s)"
        top = self.labels[0].label if self.labels else "?"
        return f"Event({self.cam} segment {self.segment_id} {self.start_s:.2f}-{self.end_s:.2f}s {top!r})"


@register
class DecodeRequest(Message):
    """Ask the decoder for text of one segment (decode/<cam>)."""

    TYPE: ClassVar[str] = "DecodeRequest"
    cam: str
    segment_id: Id
    start_ns: Ns
    end_ns: Ns
    start_s: float = 0.0
    end_s: float = 0.0
    t_capture_ns: Ns  # newest frame the segment's embedding depends on
    embedding: np.ndarray  # float32 [D]


@register
class Caption(Message):
    """Decoded text of one segment (captions/<cam>)."""

    TYPE: ClassVar[str] = "Caption"
    cam: str
    segment_id: Id
    text: str
    start_ns: Ns
    end_ns: Ns
    start_s: float = 0.0
    end_s: float = 0.0
    t_capture_ns: Ns
    latency_ms: float  # frame capture -> caption published
    # True: `text` is the nearest phrase of a phrase bank (a model without a trained Y-decoder), not decoded
    retrieved: bool = False
    score: float | None = None  # retrieved: cosine between the segment's embedding and the phrase
    # True: the same text as this camera's previous caption, a continuation of it and not news (a robot
    # that wants news skips these; the decoder counts them as `captions_repeated` on stats/decoder)
    repeat: bool = False

    def __str__(self) -> str:
        return f"Caption({self.cam} {self.start_s:.2f}-{self.end_s:.2f}s {self.text!r})"


class WatchItem(BaseModel):
    """One watch phrase of a `WatchList` (a field, not a message of its own)."""

    id: str  # "config:<label>" (pipeline.events.watch) or "w-<8 hex>" (added through the world's `watch`)
    phrase: str
    camera: str | None = None  # None: every camera
    enter: float  # cosine at or above which the phrase becomes active
    leave: float  # cosine at or below which it becomes inactive again
    source: Literal["config", "runtime"]


@register
class WatchList(Message):
    """Every watch phrase the world knows (watches/all): the configured ones and those added at run time.
    Published by the world whenever the list changes and about once a second, so a (re)started events
    node gets it without asking; the events node scores the runtime ones (it has the configured ones)."""

    TYPE: ClassVar[str] = "WatchList"
    watches: list[WatchItem] = Field(default_factory=list)


@register
class Pose(Message):
    """Where the robot carrying camera `cam` was (pose/<cam>): from a bag's or a live ROS 2 graph's
    odometry, PoseStamped or TF, so memory can say where something was seen. Planar yaw is what
    queries use; the full orientation travels too for consumers that need it."""

    TYPE: ClassVar[str] = "Pose"
    cam: str
    frame_id: str  # the fixed frame the position is in ("map", "odom", ...)
    child_frame_id: str = ""  # the moving frame (base_link), when the source names one
    stamp_ns: Ns  # the source's header stamp (bag or robot clock), ns since the epoch
    x: float  # metres in frame_id
    y: float
    z: float = 0.0
    yaw: float = 0.0  # radians about +z, from the orientation quaternion
    qx: float = 0.0
    qy: float = 0.0
    qz: float = 0.0
    qw: float = 1.0
    source: str = ""  # where it came from: "odometry:/odom", "pose:/amcl_pose", "tf:map->base_link"

    def __str__(self) -> str:
        return f"Pose({self.cam} {self.frame_id} x={self.x:.2f} y={self.y:.2f} yaw={self.yaw:.2f})"

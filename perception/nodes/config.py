"""The `pipeline:` section of the YAML config: cameras, per-node settings, supervision.

Topology and rates live here, not in node code. Validated by pydantic with the rest of AppConfig before
any process starts; every error is reported with its dotted path (e.g. `pipeline.cameras.0.fps`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

_NAME = r"^[A-Za-z0-9_.-]+$"  # a camera name becomes part of topic names


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # old key -> what became of it: a config that still uses one fails with that hint at the key's own
    # path, instead of pydantic's bare "Extra inputs are not permitted"
    renamed: ClassVar[dict[str, str]] = {}

    @model_validator(mode="wrap")
    @classmethod
    def _renamed_keys(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        """Every error of the section as pydantic reports it, an old key's with its hint instead."""
        try:
            return handler(data)
        except ValidationError as exc:
            errors = exc.errors()
            if not any(_is_renamed(e, cls.renamed) for e in errors):
                raise
            hinted = [_renamed_error(e, cls.renamed) if _is_renamed(e, cls.renamed) else e for e in errors]
            raise ValidationError.from_exception_data(exc.title, hinted) from None


def _is_renamed(err: ErrorDetails, renamed: dict[str, str]) -> bool:
    return err["type"] == "extra_forbidden" and err["loc"][-1] in renamed


def _renamed_error(err: ErrorDetails, renamed: dict[str, str]) -> InitErrorDetails:
    hint = PydanticCustomError("renamed", "{hint}", {"hint": renamed[err["loc"][-1]]})
    return InitErrorDetails(type=hint, loc=err["loc"], input=err["input"])


class CameraConfig(_Section):
    """One camera. `source`: "synthetic", a video file path or URL (PyAV), or a camera index (OpenCV)."""

    name: str = Field("cam0", pattern=_NAME)
    source: str = "synthetic"
    fps: float = Field(30.0, gt=0, le=1000)  # high-speed cameras reach ~1000 fps
    realtime: bool = True  # files: pace at the file's rate; False: as fast as the encoder takes them
    loop: bool = False  # files and synthetic streams: start again at the end
    # synthetic source only
    seed: int = 0
    split: str = Field("heldout", pattern=r"^(train|heldout)$")
    duration_s: float | None = Field(None, gt=0)  # stream length; None: 30-120 s drawn from the seed
    size: int = Field(64, ge=16, le=1024)
    # retry an unreadable / vanished source with exponential backoff (never crash the pipeline)
    retry_initial_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(10.0, gt=0)

    @property
    def kind(self) -> str:
        if self.source == "synthetic":
            return "synthetic"
        if self.source.isdigit():
            return "camera"
        return "file"


class EncoderConfig(_Section):
    """Sliding windows per camera, batched across cameras, X-encoder + predictor."""

    window_frames: int | None = Field(None, ge=1)  # frames per window; None: the model's x_encoder.frames
    # Defaults match how `perception eval` embeds streams (8 frames over 2 s, one step every 0.25 s) at 30 fps:
    frame_step: int = Field(8, ge=1)  # take every n-th camera frame into a window (8 frames x 8 = 1.9 s)
    stride_frames: int = Field(8, ge=1)  # a new window every n camera frames (0.27 s at 30 fps)
    max_batch: int = Field(8, ge=1)  # windows per forward pass, across cameras
    query: str = ""  # the captioning query (the neutral query of stage-1 training)
    threads: int | None = Field(None, ge=1)  # torch threads; None: torch's default
    # TorchScript-trace the window pass (perception/model/window.py): it then runs in C++ without the GIL,
    # beside the event loop, and ~1.3x faster on CPU; a model the tracer cannot follow falls back to eager
    jit: bool = True
    rpc: str = ""  # `ask` endpoint of the encoder; "" -> ipc://{bus.runtime_dir}/encoder
    # cameras the encoder keeps windows for; frames for more (names anyone on the bus can invent) evict the
    # least recently seen camera that is not in pipeline.cameras
    max_cameras: int = Field(16, ge=1)


class WatchConfig(_Section):
    """An open-vocabulary phrase scored against every embedding, with hysteresis (enter >= leave).

    (Not `on`/`off`: YAML 1.1 reads those keys as booleans.)"""

    label: str = Field(min_length=1)
    enter: float = Field(0.5, ge=-1, le=1)  # cosine at or above which the label becomes active
    leave: float = Field(0.4, ge=-1, le=1)  # cosine at or below which it becomes inactive again

    @model_validator(mode="after")
    def _hysteresis(self) -> WatchConfig:
        if self.leave > self.enter:
            raise ValueError(f"leave ({self.leave}) must be <= enter ({self.enter})")
        return self


class EventsConfig(_Section):
    """The online segmenter (perception.eval.online) per embedding stream, top labels, watch list.

    Segment lengths are seconds of stream time, not windows: the events node converts them to steps per
    camera from its window cadence, so changing `encoder.stride_frames` or a camera's fps keeps them."""

    renamed: ClassVar[dict[str, str]] = {
        "min_len": "renamed to min_len_s (seconds of stream time, no longer windows)",
        "max_len": "renamed to max_len_s (seconds of stream time, no longer windows)",
    }

    threshold: float = Field(5.0, ge=0)  # Ward merge cost in noise units
    window: int = Field(4, ge=1)  # look-ahead steps (windows)
    confirm: int = Field(2, ge=1)  # consecutive steps above threshold
    min_len_s: float = Field(0.5, gt=0)  # shortest segment (at least one window)
    max_len_s: float | None = Field(16.0, gt=0)  # force a boundary (a caption) after this long; None: never
    top_labels: int = Field(3, ge=0)
    labels: list[str] | None = None  # label vocabulary; None: ShapesWorld's canonical captions
    watch: list[WatchConfig] = Field(default_factory=list)
    # embedding streams segmented at once: a publisher can invent camera names, so the least recently
    # heard stream beyond this is dropped (and counted); the cameras in `pipeline.cameras` never are
    max_cameras: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _lengths(self) -> EventsConfig:
        if self.max_len_s is not None and self.max_len_s < self.min_len_s:
            raise ValueError(f"max_len_s ({self.max_len_s}) must be >= min_len_s ({self.min_len_s})")
        return self


class DecoderConfig(_Section):
    max_batch: int = Field(8, ge=1)
    beams: int = Field(1, ge=1)
    threads: int | None = Field(None, ge=1)


class WorldConfig(_Section):
    """Bounded, time-indexed memory per camera; optionally persisted so a restart keeps it."""

    max_items: int = Field(5000, ge=10)  # events + captions kept per camera
    max_embeddings: int = Field(2000, ge=10)  # recent window embeddings kept per camera
    horizon_s: float = Field(3600.0, gt=0)  # anything older is forgotten
    persist: Path | None = None  # JSON-lines file (mode 0600); None: memory only
    ask_timeout_s: float = Field(10.0, gt=0)
    # cameras remembered: names come from publishers, so the least recently heard beyond this is forgotten
    # (and counted); the cameras in `pipeline.cameras` never are
    max_cameras: int = Field(16, ge=1)
    # the persist file is rewritten from memory once it holds this many lines more than twice what memory
    # keeps, so it stays bounded however long the node runs
    compact_every: int = Field(1000, ge=1)
    # appends reach the kernel at once (a crash loses nothing) and the disk within this (a power cut loses
    # at most this long); 0: fsync every record
    fsync_interval_s: float = Field(1.0, ge=0)


class SupervisorConfig(_Section):
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(10.0, gt=0)
    stable_after_s: float = Field(30.0, gt=0)  # a node that ran this long restarts with the initial backoff
    # restarts in one crash loop (no run of stable_after_s in between) before the node is given up: a node
    # that cannot work (missing weights, a broken device) fails visibly instead of restarting forever
    max_restarts: int = Field(5, ge=0)
    startup_timeout_s: float = Field(180.0, gt=0)  # waiting for a node's first heartbeat
    stop_timeout_s: float = Field(5.0, gt=0)  # SIGTERM -> SIGKILL


class PipelineConfig(_Section):
    cameras: list[CameraConfig] = Field(default_factory=lambda: [CameraConfig()], min_length=1)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    world: WorldConfig = Field(default_factory=WorldConfig)
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig)
    nodes: list[str] = Field(default_factory=lambda: ["world", "decoder", "events", "encoder", "capture"])
    run_proxy: bool = True  # False: another host runs the proxy (see configs/two-host.yaml)

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, cams: list[CameraConfig]) -> list[CameraConfig]:
        names = [c.name for c in cams]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"camera names must be unique, repeated: {dupes}")
        return cams

    @field_validator("nodes")
    @classmethod
    def _known_nodes(cls, nodes: list[str]) -> list[str]:
        from perception.nodes import NODE_NAMES

        unknown = [n for n in nodes if n not in NODE_NAMES]
        if unknown:
            raise ValueError(f"unknown node(s) {unknown}; valid: {list(NODE_NAMES)}")
        return nodes

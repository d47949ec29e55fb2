"""The `pipeline:` section of the YAML config: cameras, per-node settings, supervision.

Topology and rates live here, not in node code. Validated by pydantic with the rest of AppConfig before
any process starts; every error is reported with its dotted path (e.g. `pipeline.cameras.0.fps`). A
camera's config is a `type:` variant defined beside the source that reads it (perception/nodes/sources.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from perception.memory.config import MemoryConfig
from perception.nodes.cameras import AnyCameraConfig
from perception.nodes.sections import MAX_CAMERAS, MAX_SECONDS, NAME_PATTERN
from perception.nodes.sections import Section as _Section
from perception.nodes.sources import CameraConfig, SyntheticCameraConfig
from perception.ros2.config import Ros2OutConfig

# ---------------------------------------------------------------------------------------------- bounds
# Every numeric knob is bounded by what a machine could mean, so no config (nor one stored in a recording)
# sizes an allocation or a loop beyond it; pydantic's error names the bound at the knob's dotted path.
# The numbers are listed in docs/reliability.md "Untrusted files: limits".
MAX_BATCH = 4096  # windows (encoder) or decodes (decoder) per forward pass
MAX_WINDOW_FRAMES = 1024  # frames per window (the vjepa2-vitl preset: 16; V-JEPA 2 trains on up to 64)
MAX_FRAME_STRIDE = 100_000  # frame_step / stride_frames: an hour at 30 fps
MAX_BEAMS = 64  # beam search width
MAX_THREADS = 1024  # torch threads of one process
MAX_QUERY_CHARS = 4096  # the captioning query
MAX_LABELS = 10_000  # label vocabulary (each one embedded once)
MAX_WATCHES = 1024  # configured watch phrases
MAX_ITEMS = 1_000_000  # world: events + captions kept per camera
MAX_EMBEDDINGS = 100_000  # world: window embeddings kept per camera (6 KB each at D = 1536)
MAX_RESTARTS = 10_000


class CaptureConfig(_Section):
    """What the capture node publishes (perception/nodes/feed.py). `send: encoder`: on frames/<cam> only
    the frames the encoder's windows use (every gcd(frame_step, stride_frames)-th), short side scaled to
    the model's input size; `send: all`: every frame as the camera delivers it. `full_fps`: also publish
    full-resolution frames on frames_full/<cam> at about this rate (recorders, viewers); None: none."""

    send: Literal["encoder", "all"] = "encoder"
    full_fps: float | None = Field(None, gt=0)


class EncoderConfig(_Section):
    """Sliding windows per camera, batched across cameras, X-encoder + predictor.

    `mode: vlm` runs the token-generative baseline instead (perception/nodes/vlm_captions.py): every window
    captioned by the VLM on captions/<cam>, what a classical VLM service does; no embeddings, so the events
    and decoder nodes have nothing to do (configs/tiny-vlm.yaml leaves them out)."""

    mode: Literal["jepa", "vlm"] = "jepa"
    # the TokenVLM directory (vlm.json + vlm.safetensors, `perception train --preset tiny-vlm`) for mode vlm;
    # relative: to the working directory, else to the repo root (as model.checkpoint)
    vlm_checkpoint: str = Field("checkpoints/tiny-vlm", min_length=1)

    window_frames: int | None = Field(
        None, ge=1, le=MAX_WINDOW_FRAMES
    )  # frames per window; None: the model's x_encoder.frames
    # Defaults match how `perception eval` embeds streams (8 frames over 2 s, one step every 0.25 s) at 30 fps:
    frame_step: int = Field(
        8, ge=1, le=MAX_FRAME_STRIDE
    )  # take every n-th camera frame into a window (8 frames x 8 = 1.9 s)
    stride_frames: int = Field(8, ge=1, le=MAX_FRAME_STRIDE)  # a new window every n camera frames (0.27 s at 30 fps)
    max_batch: int = Field(8, ge=1, le=MAX_BATCH)  # windows per forward pass, across cameras
    query: str = Field("", max_length=MAX_QUERY_CHARS)  # the captioning query (the neutral query of stage-1 training)
    threads: int | None = Field(None, ge=1, le=MAX_THREADS)  # torch threads; None: torch's default
    # TorchScript-trace the window pass (perception/model/window.py): it then runs in C++ without the GIL,
    # beside the event loop, and ~1.3x faster on CPU; a model the tracer cannot follow falls back to eager
    jit: bool = True
    rpc: str = ""  # `ask` endpoint of the encoder; "" -> ipc://{bus.runtime_dir}/encoder
    # cameras the encoder keeps windows for; frames for more (names anyone on the bus can invent) evict the
    # least recently seen camera that is not in pipeline.cameras
    max_cameras: int = Field(16, ge=1, le=MAX_CAMERAS)
    # encoder processes (encoder.0 ... encoder.{N-1}) sharing the cameras (perception/nodes/workers.py):
    # a camera's home is assign[camera], else the worker with the fewest so far; a dead worker's
    # cameras go to the live ones. Each worker has its own `ask` endpoint: rpc (or ipc://.../encoder) with
    # `.K` appended, or for tcp:// the port + K
    workers: int = Field(1, ge=1, le=64)
    assign: dict[str, int] = Field(default_factory=dict)
    worker_timeout_s: float = Field(
        3.0, gt=0, le=MAX_SECONDS
    )  # a worker silent this long is dead: the others take its cameras
    # a worker that starts takes its cameras this long after it is ready: the others have heard it and let go,
    # and its frame rings are full (a window spans (window_frames - 1) * frame_step frames: 1.9 s at 30 fps)
    claim_delay_s: float = Field(2.0, ge=0, le=MAX_SECONDS)

    @model_validator(mode="after")
    def _assign_in_range(self) -> EncoderConfig:
        bad = {cam: k for cam, k in self.assign.items() if not 0 <= k < self.workers}
        if bad:
            raise ValueError(f"assign names workers outside 0..{self.workers - 1}: {bad}")
        return self


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
    """The online segmenter (perception/nodes/segmenter.py) per embedding stream, top labels, watch list.

    Segment lengths are seconds of stream time, not windows: the events node converts them to steps per
    camera from its window cadence, so changing `encoder.stride_frames` or a camera's fps keeps them."""

    renamed: ClassVar[dict[str, str]] = {
        "min_len": "renamed to min_len_s (seconds of stream time, no longer windows)",
        "max_len": "renamed to max_len_s (seconds of stream time, no longer windows)",
    }

    threshold: float = Field(5.0, ge=0, le=1e9)  # Ward merge cost in noise units
    window: int = Field(4, ge=1, le=10_000)  # look-ahead steps (windows)
    confirm: int = Field(2, ge=1, le=10_000)  # consecutive steps above threshold
    min_len_s: float = Field(0.5, gt=0, le=MAX_SECONDS)  # shortest segment (at least one window)
    max_len_s: float | None = Field(
        16.0, gt=0, le=MAX_SECONDS
    )  # force a boundary (a caption) after this long; None: never
    top_labels: int = Field(3, ge=0, le=1000)
    labels: list[str] | None = Field(
        None, max_length=MAX_LABELS
    )  # label vocabulary; None: ShapesWorld's canonical captions
    watch: list[WatchConfig] = Field(default_factory=list, max_length=MAX_WATCHES)
    # embedding streams segmented at once: a publisher can invent camera names, so the least recently
    # heard stream beyond this is dropped (and counted); the cameras in `pipeline.cameras` never are
    max_cameras: int = Field(16, ge=1, le=MAX_CAMERAS)

    @model_validator(mode="after")
    def _lengths(self) -> EventsConfig:
        if self.max_len_s is not None and self.max_len_s < self.min_len_s:
            raise ValueError(f"max_len_s ({self.max_len_s}) must be >= min_len_s ({self.min_len_s})")
        return self


class DecoderConfig(_Section):
    max_batch: int = Field(8, ge=1, le=MAX_BATCH)
    beams: int = Field(1, ge=1, le=MAX_BEAMS)
    threads: int | None = Field(None, ge=1, le=MAX_THREADS)


class WorldConfig(_Section):
    """Bounded, time-indexed memory per camera; optionally persisted so a restart keeps it."""

    max_items: int = Field(5000, ge=10, le=MAX_ITEMS)  # events + captions kept per camera
    max_embeddings: int = Field(2000, ge=10, le=MAX_EMBEDDINGS)  # recent window embeddings kept per camera
    horizon_s: float = Field(3600.0, gt=0, le=366 * 86_400)  # anything older is forgotten
    persist: Path | None = None  # JSON-lines file (mode 0600); None: memory only
    ask_timeout_s: float = Field(10.0, gt=0, le=MAX_SECONDS)
    # cameras remembered: names come from publishers, so the least recently heard beyond this is forgotten
    # (and counted); the cameras in `pipeline.cameras` never are
    max_cameras: int = Field(16, ge=1, le=MAX_CAMERAS)
    # the persist file is rewritten from memory once it holds this many lines more than twice what memory
    # keeps, so it stays bounded however long the node runs
    compact_every: int = Field(1000, ge=1, le=MAX_ITEMS)
    # appends reach the kernel at once (a crash loses nothing) and the disk within this (a power cut loses
    # at most this long); 0: fsync every record
    fsync_interval_s: float = Field(1.0, ge=0, le=MAX_SECONDS)
    # watch phrases added at run time (the `watch` RPC) per camera scope (one camera, or every camera);
    # at most max_cameras + 1 scopes. With `persist`, kept in `<persist>.watches.json`
    max_watches: int = Field(32, ge=1, le=1024)
    # `watch` / `unwatch` calls per second per RPC client (its CURVE key, else its connection), in bursts of
    # up to `write_burst`; beyond that a call gets RpcError "rate_limited" saying when to retry. The
    # clients tracked are bounded too (least recently heard forgotten)
    write_rate_per_s: float = Field(20.0, gt=0, le=10_000)
    write_burst: int = Field(40, ge=1, le=10_000)
    max_rpc_clients: int = Field(1024, ge=1, le=1_000_000)
    # robot memory in a database (perception/memory/, docs/memory.md): a SQLite file path (embedded) or
    # postgresql://user@host/db?sslmode=... (a fleet's server; password from memory.password_file or
    # $PGPASSWORD); None: the in-RAM ring only
    store: str | None = Field(None, min_length=1)
    robot: str | None = Field(None, min_length=1, max_length=256, pattern=NAME_PATTERN)  # None: the hostname
    memory: MemoryConfig = Field(default_factory=MemoryConfig)


class SupervisorConfig(_Section):
    backoff_initial_s: float = Field(0.5, gt=0, le=MAX_SECONDS)
    backoff_max_s: float = Field(10.0, gt=0, le=MAX_SECONDS)
    stable_after_s: float = Field(
        30.0, gt=0, le=MAX_SECONDS
    )  # a node that ran this long restarts with the initial backoff
    # restarts in one crash loop (no run of stable_after_s in between) before the node is given up: a node
    # that cannot work (missing weights, a broken device) fails visibly instead of restarting forever
    max_restarts: int = Field(5, ge=0, le=MAX_RESTARTS)
    startup_timeout_s: float = Field(180.0, gt=0, le=MAX_SECONDS)  # waiting for a node's first heartbeat
    stop_timeout_s: float = Field(5.0, gt=0, le=MAX_SECONDS)  # SIGTERM -> SIGKILL
    # a running node (or the proxy) whose stats/<node> heartbeat is silent this long is wedged (stopped,
    # deadlocked, its loop blocked): it is killed and restarted like a crashed one. At least 3 heartbeats
    # (3 x bus.stats_interval_s); None: never
    heartbeat_timeout_s: float | None = Field(10.0, gt=0, le=MAX_SECONDS)
    # nodes the launcher keeps a spare process of: started once the node is ready, it imports and loads its
    # model, then waits; when the node dies the spare takes over at once instead of a cold start (encoder:
    # 6 s -> under 1 s to its first output). Costs the node's memory a second time (its model too). Names
    # as the launcher runs them: "encoder" is the single encoder; workers (encoder.workers > 1) hand a dead
    # one's cameras to the others instead, and get a spare only when listed ("encoder.0", ...)
    spares: list[str] = Field(default_factory=lambda: ["encoder"], max_length=16)


class PipelineConfig(_Section):
    # each camera's `type:` picks its kind (perception/nodes/sources.py); no type: synthetic
    cameras: list[AnyCameraConfig] = Field(
        default_factory=lambda: [SyntheticCameraConfig()], min_length=1, max_length=MAX_CAMERAS
    )
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    world: WorldConfig = Field(default_factory=WorldConfig)
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig)
    nodes: list[str] = Field(default_factory=lambda: ["world", "decoder", "events", "encoder", "capture"])
    run_proxy: bool = True  # False: another host runs the proxy (see configs/two-host.yaml)
    # captions and events out to a ROS 2 graph (perception/nodes/ros2_out.py); set: the `ros2` node runs
    ros2: Ros2OutConfig | None = None
    # topic prefixes another host publishes (e.g. ["frames/"] where the robot runs capture): inputs
    # they feed are not reported as wired to nothing (perception/nodes/graph.py)
    external_inputs: list[str] = Field(default_factory=list)

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, cams: list[CameraConfig]) -> list[CameraConfig]:
        names = [c.name for c in cams]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"camera names must be unique, repeated: {dupes}")
        return cams

    @model_validator(mode="after")
    def _assign_known_cameras(self) -> PipelineConfig:
        unknown = sorted(set(self.encoder.assign) - {c.name for c in self.cameras})
        if unknown:
            raise ValueError(f"encoder.assign names cameras not in pipeline.cameras: {unknown}")
        return self

    @model_validator(mode="after")
    def _ros2_node(self) -> PipelineConfig:
        """`pipeline.ros2` runs the ros2 node, and the ros2 node has its section."""
        if self.ros2 is not None and "ros2" not in self.nodes:
            self.nodes = [*self.nodes, "ros2"]
        elif self.ros2 is None and "ros2" in self.nodes:
            self.ros2 = Ros2OutConfig()
        return self

    @field_validator("nodes")
    @classmethod
    def _known_nodes(cls, nodes: list[str]) -> list[str]:
        from perception.nodes import NODE_NAMES

        unknown = [n for n in nodes if n not in NODE_NAMES]
        if unknown:
            raise ValueError(f"unknown node(s) {unknown}; valid: {list(NODE_NAMES)}")
        return nodes

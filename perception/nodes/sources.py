"""Camera kinds: each kind's config (a `type:` variant of `pipeline.cameras[]`) beside the `Source` reading it.

    pipeline:
      cameras:
        - {name: cam0, type: file, path: clip.mp4}      # or type: synthetic / opencv, keys of that kind

    with make_source(camera_config) as src:     # connect() on enter, close() on exit
        item = src.read()                       # SourceFrame, or None at the end of a finite source

Kinds: `synthetic` (a ShapesWorld stream rendered live), `file` (a video file or URL, PyAV) and `opencv`
(a local camera by index, OpenCV). A kind is a `CameraConfig` subclass whose `type` is a Literal, and a
`Source` subclass registered with it by `@camera_kind(TheConfig)`: `CAMERA_KINDS` maps each `type` to the
two, and the union `pipeline.cameras` validates with (`AnyCameraConfig`) and `make_source` follow from it,
so a new kind is one more pair in this module. A camera without `type` is synthetic. A camera that still
has the old `source:` key fails with the typed form to write instead, worked out from its value the way
`perception up --source` reads one (`source_shorthand`).

`read(want)` is told what to make of the next frame (perception/nodes/feed.py): nothing (a frame the
encoder never uses is only consumed: a synthetic one is not rendered, a file's is decoded but not
converted to RGB, a camera's grabbed but not retrieved), the encoder's copy scaled to its size, a
full-resolution copy, or both.

`connect` raises `SourceUnavailableError` (a ConnectionError) with a message that starts with what
failed; `read` raises it when a live source disappears. Its `permanent` says whether waiting can help: a
local file that is not a video never will, a camera or stream that refuses now may come back. `probe()`
(connect, decode one frame, close) is what `perception up` runs on every camera before anything starts
(`probe_cameras`): a permanent failure stops the start with its reason (exit 2), a transient one is said
once and retried by the capture node with backoff. A new kind gets this by raising the error with the
right `permanent` from its `connect`/`read`, or by overriding `probe`.
Backends (the ShapesWorld renderer, PyAV, OpenCV) are imported in `connect`, and numpy not at all, so
importing this module, and with it the config, stays cheap.
"""

from __future__ import annotations

import abc
import collections
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, TypeVar

from pydantic import Field

from perception.nodes.feed import EVERYTHING, Want, scaled
from perception.nodes.sections import MAX_SECONDS, NAME_PATTERN, Section

if TYPE_CHECKING:
    import numpy as np


# -- what every kind shares -------------------------------------------------------------------------------


class CameraConfig(Section):
    """What every camera has; each kind's subclass below adds its own keys and narrows `type`."""

    name: str = Field(
        "cam0", pattern=NAME_PATTERN, max_length=128
    )  # used in topic names: frames/<name>, captions/<name>
    type: str  # the kind; a subclass narrows it to its own Literal
    fps: float = Field(30.0, gt=0, le=1000)  # frames per second; high-speed cameras reach ~1000 fps
    realtime: bool = True  # pace frames at the source's rate; False: as fast as the encoder takes them
    loop: bool = False  # finite sources (files, synthetic streams): start again at the end
    # retry an unreadable / vanished source with exponential backoff (never crash the pipeline)
    retry_initial_s: float = Field(0.5, gt=0, le=MAX_SECONDS)
    retry_max_s: float = Field(10.0, gt=0, le=MAX_SECONDS)

    # True: the source's own frame rate wins over `fps` (a file plays at its container's rate)
    rate_from_source: ClassVar[bool] = False

    @property
    def frame_size_px(self) -> int | None:
        """Side of the square frames the camera delivers, when the config alone tells it; None: unknown
        until frames arrive."""
        return None

    def describe(self) -> str:
        """What the camera reads, for logs ("file clip.mp4")."""
        return self.type

    def preflight(self) -> dict[str, str]:
        """Problems visible before anything starts (a video file that is not there): key -> message."""
        return {}


class SourceUnavailableError(ConnectionError):
    """A source that cannot be opened or read (missing file, bad codec, camera gone).

    `permanent`: retrying cannot help (not a video, a backend not installed); otherwise the source may come
    back (a camera unplugged, a stream server down) and is retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(slots=True)
class SourceFrame:
    image: np.ndarray | None  # uint8 [H, W, 3] RGB, the encoder's copy; None when not wanted
    index: int  # frame number in the source
    stream_s: float  # position in the source, seconds
    full: np.ndarray | None = None  # uint8 [H, W, 3] RGB at the source's resolution, when wanted


class Source(abc.ABC):
    """One camera-like input. Not thread-safe: one reader."""

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self.connected = False
        self._index = 0  # the index of the frame the next `read` returns
        # what the source counted itself (samples it rejected, ...): the capture node adds them to its
        # counters as <cam>.<key> and clears them
        self.counts: collections.Counter[str] = collections.Counter()

    @property
    def position(self) -> int:
        """Index of the frame the next `read` returns."""
        return self._index

    @property
    def fps(self) -> float:
        """Native frame rate (pacing for realtime playback)."""
        return self.config.fps

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def read(self, want: Want = EVERYTHING) -> SourceFrame | None:
        """The next frame (its pixels as `want` says), or None when a finite source has ended."""

    def take_poses(self) -> list:
        """`Pose` messages the source read since the last call (a ROS bag's or graph's odometry), for
        pose/<cam>; most sources have none."""
        return []

    def close(self) -> None:
        self.connected = False

    def probe(self) -> None:
        """Check the source can work before anything starts: connect, read (decode) one frame, close.
        Raises SourceUnavailableError; a finite source with no frame at all is a permanent one."""
        try:
            self.connect()
            if self.read(EVERYTHING) is None:
                raise SourceUnavailableError(f"{self.config.describe()}: no frame to read", permanent=True)
        finally:
            self.close()

    def __enter__(self) -> Source:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CameraKind(NamedTuple):
    config: type[CameraConfig]
    source: type[Source]


CAMERA_KINDS: dict[str, CameraKind] = {}  # `type:` -> its config class and its reader, in definition order

_S = TypeVar("_S", bound=type[Source])


def camera_kind(config: type[CameraConfig]) -> Callable[[_S], _S]:
    """Class decorator: the decorated `Source` reads cameras of `config`, whose `type` default names the kind."""

    def register(source: _S) -> _S:
        tag = config.model_fields["type"].default
        if not isinstance(tag, str) or tag in CAMERA_KINDS:
            raise ValueError(f"{config.__name__}: camera type {tag!r} is not a new string")
        CAMERA_KINDS[tag] = CameraKind(config, source)
        return source

    return register


# -- synthetic ------------------------------------------------------------------------------------------


class SyntheticCameraConfig(CameraConfig):
    """A ShapesWorld stream rendered live; its ground-truth segments go to truth/<cam> as they start."""

    type: Literal["synthetic"] = "synthetic"
    seed: int = Field(0, ge=0, lt=2**32)  # which stream (a numpy seed)
    split: str = Field("heldout", pattern=r"^(train|heldout|val)$")
    duration_s: float | None = Field(None, gt=0, le=366 * 86_400)  # stream length; None: 30-120 s drawn from the seed
    size: int = Field(64, ge=16, le=1024)  # frame side, pixels

    @property
    def frame_size_px(self) -> int | None:
        return self.size

    def describe(self) -> str:
        return f"synthetic seed {self.seed} ({self.split})"


@camera_kind(SyntheticCameraConfig)
class SyntheticSource(Source):
    """A ShapesWorld stream rendered on demand; `seek(i)` lets a live camera skip frames it is late for."""

    config: SyntheticCameraConfig

    def __init__(self, config: SyntheticCameraConfig) -> None:
        super().__init__(config)
        self.stream = None
        self._next = 0

    def connect(self) -> None:
        if self.connected:
            raise RuntimeError(f"source {self.config.name} is already connected")
        from perception.data.stream import ShapesStream

        c = self.config
        self.stream = ShapesStream(seed=c.seed, split=c.split, duration_s=c.duration_s, fps=c.fps, size=c.size)
        self._next = 0
        self.connected = True

    @property
    def position(self) -> int:
        """Index of the frame the next `read` returns."""
        return self._next

    def seek(self, index: int) -> None:
        self._next = max(index, 0)

    def read(self, want: Want = EVERYTHING) -> SourceFrame | None:
        """Rendered at `size` whatever `want.side` (set `size` to the model's input size)."""
        if self.stream is None:
            raise SourceUnavailableError(f"source {self.config.name}: read before connect")
        i = self._next
        if i >= self.stream.num_frames:
            return None
        self._next = i + 1
        image = self.stream.frame_at(i) if want.pixels else None
        return SourceFrame(image if want.feed else None, i, self.stream.time_of(i), image if want.full else None)


# -- file -----------------------------------------------------------------------------------------------


class FileCameraConfig(CameraConfig):
    """A video file or URL (rtsp://, http://, ...) decoded with PyAV, played at the container's frame rate
    (`fps` only when the container does not tell one)."""

    type: Literal["file"] = "file"
    path: str = Field(min_length=1)  # a file path, or a URL (anything with "://")

    rate_from_source: ClassVar[bool] = True

    @property
    def is_url(self) -> bool:
        return "://" in self.path

    def describe(self) -> str:
        return f"file {self.path}"

    def preflight(self) -> dict[str, str]:
        if not self.is_url and not Path(self.path).is_file():
            return {"path": f"video file not found: {self.path}"}
        return {}


@camera_kind(FileCameraConfig)
class FileSource(Source):
    """A video file or URL decoded with PyAV, frames as RGB, times from the container's timestamps."""

    config: FileCameraConfig

    def __init__(self, config: FileCameraConfig) -> None:
        super().__init__(config)
        self._container = None
        self._frames: Iterator | None = None
        self._fps: float | None = None

    @property
    def fps(self) -> float:
        return self._fps or self.config.fps

    def connect(self) -> None:
        import av

        src = self.config.path
        local = not self.config.is_url  # a local file that is not a video now never will be; a URL may come back
        if local and not Path(src).is_file():
            raise SourceUnavailableError(f"video file not found: {src}", permanent=True)
        try:
            container = av.open(src, timeout=5.0) if self.config.is_url else av.open(src)
            if not container.streams.video:
                container.close()
                raise SourceUnavailableError(f"no video stream in {src}", permanent=local)
            stream = container.streams.video[0]
        except av.FFmpegError as exc:
            raise SourceUnavailableError(f"cannot open video {src}: {exc}", permanent=local) from exc
        self._fps = float(stream.average_rate) if stream.average_rate else None
        stream.thread_type = "AUTO"  # frame and slice threads in FFmpeg's decoder, outside the GIL
        self._container = container
        self._frames = container.decode(stream)
        self._index = 0
        self.connected = True

    def read(self, want: Want = EVERYTHING) -> SourceFrame | None:
        """Every frame is decoded (later ones depend on it); only a wanted one is converted, the encoder's
        copy scaled within the same conversion (swscale, area filter)."""
        if self._frames is None:
            raise SourceUnavailableError(f"source {self.config.path}: read before connect")
        try:
            frame = next(self._frames)
            i = self._index
            self._index += 1
            t = float(frame.time) if frame.time is not None else i / self.fps
            image = full = None
            size = scaled(frame.height, frame.width, want.side) if want.feed else None
            if want.full or (want.feed and size is None):
                full = frame.to_ndarray(format="rgb24")
            if want.feed:
                image = (
                    full
                    if size is None
                    else frame.to_ndarray(format="rgb24", height=size[0], width=size[1], interpolation="AREA")
                )
        except StopIteration:
            return None
        except Exception as exc:  # av raises several error types mid-stream
            raise SourceUnavailableError(
                f"cannot decode {self.config.path}: {exc}", permanent=not self.config.is_url
            ) from exc
        return SourceFrame(image, i, t, full if want.full else None)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = None
        self._frames = None
        super().close()


# -- opencv ---------------------------------------------------------------------------------------------


class OpenCVCameraConfig(CameraConfig):
    """A local camera by device index through OpenCV (optional: pip install opencv-python-headless)."""

    type: Literal["opencv"] = "opencv"
    index: int = Field(0, ge=0, le=4096)  # the device index (/dev/video<index> on Linux)

    def describe(self) -> str:
        return f"opencv camera {self.index}"


@camera_kind(OpenCVCameraConfig)
class OpenCVSource(Source):
    """A local camera by index through OpenCV (optional dependency)."""

    config: OpenCVCameraConfig

    def __init__(self, config: OpenCVCameraConfig) -> None:
        super().__init__(config)
        self._cap = None
        self._t0: float | None = None

    def connect(self) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise SourceUnavailableError(
                f"camera {self.config.index}: OpenCV is not installed (pip install opencv-python-headless)",
                permanent=True,
            ) from exc
        cap = cv2.VideoCapture(self.config.index)
        if not cap.isOpened():
            cap.release()
            raise SourceUnavailableError(f"camera {self.config.index} cannot be opened (unplugged or busy?)")
        cap.set(cv2.CAP_PROP_FPS, self.config.fps)
        self._cap = cap
        self._index = 0
        self.connected = True

    def read(self, want: Want = EVERYTHING) -> SourceFrame | None:
        """A frame nobody wants is grabbed (the driver's buffer keeps moving) but never retrieved."""
        import time

        import cv2

        if self._cap is None:
            raise SourceUnavailableError(f"camera {self.config.index}: read before connect")
        ok = self._cap.grab()
        bgr = None
        if ok and want.pixels:
            ok, bgr = self._cap.retrieve()
        if not ok:
            raise SourceUnavailableError(f"camera {self.config.index} stopped delivering frames")
        now = time.monotonic()
        self._t0 = now if self._t0 is None else self._t0
        i = self._index
        self._index += 1
        if bgr is None:
            return SourceFrame(None, i, now - self._t0)
        full = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        size = scaled(*full.shape[:2], want.side) if want.feed else None
        image = full if size is None else cv2.resize(full, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        return SourceFrame(image if want.feed else None, i, now - self._t0, full if want.full else None)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap = None
        super().close()


# -- from the kinds: the reader, the start-up probe, the `--source` shorthand (the union: nodes/cameras.py) --


def make_source(config: CameraConfig) -> Source:
    """The reader for `config`, by its class."""
    for kind in CAMERA_KINDS.values():
        if isinstance(config, kind.config):
            return kind.source(config)
    raise TypeError(f"no source reads {type(config).__name__}; camera types: {', '.join(CAMERA_KINDS)}")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What probing one camera found: nothing (it works), or its error and whether waiting can help."""

    camera: CameraConfig
    error: str | None = None
    permanent: bool = False


def probe_cameras(cameras: list[CameraConfig]) -> list[ProbeResult]:
    """`Source.probe()` on each camera, in order (what `perception up` checks before anything starts)."""
    out = []
    for cam in cameras:
        try:
            make_source(cam).probe()
        except SourceUnavailableError as exc:
            out.append(ProbeResult(cam, str(exc), exc.permanent))
        else:
            out.append(ProbeResult(cam))
    return out


def source_shorthand(text: str) -> dict[str, Any]:
    """The camera that `perception up --source TEXT` means: `synthetic`, digits (a camera index) -> opencv,
    `ros2:/topic` -> a live ROS 2 topic, `BAG.mcap[:/topic]` or `BAGDIR:/topic` -> a rosbag2 bag, anything
    else -> a video file path or URL."""
    if text == "synthetic":
        return {"type": "synthetic"}
    if text.isdigit():
        return {"type": "opencv", "index": int(text)}
    if text.startswith("ros2:"):
        return {"type": "ros2", "topic": text.removeprefix("ros2:")}
    path, sep, topic = text.rpartition(":")
    if sep and "://" not in text and topic.startswith("/") and path:
        return {"type": "rosbag", "path": path, "topic": topic}
    if text.endswith(".mcap") or (Path(text) / "metadata.yaml").is_file():
        return {"type": "rosbag", "path": text}
    return {"type": "file", "path": text}


def with_source(camera: dict[str, Any], text: str) -> dict[str, Any]:
    """`camera` (a camera config's fields) reading `source_shorthand(text)` instead: the fields every kind
    has stay, and so do the kind's own when the kind does not change."""
    new = source_shorthand(text)
    if camera.get("type", "synthetic") == new["type"]:
        return {**camera, **new}
    return {**{k: v for k, v in camera.items() if k in CameraConfig.model_fields}, **new}

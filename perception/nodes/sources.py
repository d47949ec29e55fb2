"""Frame sources for the capture node: an ABC with synthetic, video-file (PyAV) and camera (OpenCV) backends.

    with make_source(camera_config) as src:     # connect() on enter, close() on exit
        item = src.read()                       # SourceFrame, or None at the end of a finite source

`connect` raises `SourceUnavailableError` (a ConnectionError) with a message that starts with what
failed; `read` raises it when a live source disappears. The capture node retries both with backoff.
Backends are imported lazily in their own branch (OpenCV is optional).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from perception.nodes.config import CameraConfig


class SourceUnavailableError(ConnectionError):
    """A source that cannot be opened or read (missing file, bad codec, camera gone)."""


@dataclass(slots=True)
class SourceFrame:
    image: np.ndarray  # uint8 [H, W, 3] RGB
    index: int  # frame number in the source
    stream_s: float  # position in the source, seconds


class Source(abc.ABC):
    """One camera-like input. Not thread-safe: one reader."""

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self.connected = False

    @property
    def fps(self) -> float:
        """Native frame rate (pacing for realtime playback)."""
        return self.config.fps

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def read(self) -> SourceFrame | None:
        """The next frame, or None when a finite source has ended."""

    def close(self) -> None:
        self.connected = False

    def __enter__(self) -> Source:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyntheticSource(Source):
    """A ShapesWorld stream rendered on demand; `seek(i)` lets a live camera skip frames it is late for."""

    def __init__(self, config: CameraConfig) -> None:
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

    def read(self) -> SourceFrame | None:
        if self.stream is None:
            raise SourceUnavailableError(f"source {self.config.name}: read before connect")
        i = self._next
        if i >= self.stream.num_frames:
            return None
        self._next = i + 1
        return SourceFrame(self.stream.frame_at(i), i, self.stream.time_of(i))


class FileSource(Source):
    """A video file or URL decoded with PyAV, frames as RGB, times from the container's timestamps."""

    def __init__(self, config: CameraConfig) -> None:
        super().__init__(config)
        self._container = None
        self._frames: Iterator | None = None
        self._index = 0
        self._fps: float | None = None

    @property
    def fps(self) -> float:
        return self._fps or self.config.fps

    def connect(self) -> None:
        import av

        src = self.config.source
        is_url = "://" in src
        if not is_url and not Path(src).is_file():
            raise SourceUnavailableError(f"video file not found: {src}")
        try:
            container = av.open(src, timeout=5.0) if is_url else av.open(src)
            if not container.streams.video:
                container.close()
                raise SourceUnavailableError(f"no video stream in {src}")
            stream = container.streams.video[0]
        except av.FFmpegError as exc:
            raise SourceUnavailableError(f"cannot open video {src}: {exc}") from exc
        self._fps = float(stream.average_rate) if stream.average_rate else None
        self._container = container
        self._frames = container.decode(stream)
        self._index = 0
        self.connected = True

    def read(self) -> SourceFrame | None:
        if self._frames is None:
            raise SourceUnavailableError(f"source {self.config.source}: read before connect")
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except Exception as exc:  # av raises several error types mid-stream
            raise SourceUnavailableError(f"cannot decode {self.config.source}: {exc}") from exc
        i = self._index
        self._index += 1
        t = float(frame.time) if frame.time is not None else i / self.fps
        return SourceFrame(frame.to_ndarray(format="rgb24"), i, t)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = None
        self._frames = None
        super().close()


class CameraSource(Source):
    """A local camera by index through OpenCV (optional dependency)."""

    def __init__(self, config: CameraConfig) -> None:
        super().__init__(config)
        self._cap = None
        self._index = 0
        self._t0: float | None = None

    def connect(self) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise SourceUnavailableError(
                f"camera {self.config.source}: OpenCV is not installed (pip install opencv-python-headless)"
            ) from exc
        cap = cv2.VideoCapture(int(self.config.source))
        if not cap.isOpened():
            cap.release()
            raise SourceUnavailableError(f"camera {self.config.source} cannot be opened (unplugged or busy?)")
        cap.set(cv2.CAP_PROP_FPS, self.config.fps)
        self._cap = cap
        self._index = 0
        self.connected = True

    def read(self) -> SourceFrame | None:
        import time

        import cv2

        if self._cap is None:
            raise SourceUnavailableError(f"camera {self.config.source}: read before connect")
        ok, bgr = self._cap.read()
        if not ok:
            raise SourceUnavailableError(f"camera {self.config.source} stopped delivering frames")
        now = time.monotonic()
        self._t0 = now if self._t0 is None else self._t0
        i = self._index
        self._index += 1
        return SourceFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), i, now - self._t0)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap = None
        super().close()


BACKENDS: dict[str, type[Source]] = {"synthetic": SyntheticSource, "file": FileSource, "camera": CameraSource}


def make_source(config: CameraConfig) -> Source:
    return BACKENDS[config.kind](config)

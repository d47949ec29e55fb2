"""The encoder's window schedule, apart from the process: frames in, due windows out. No torch, no sockets,
no threads (the encoder node holds the lock around it): tests/nodes/test_windows.py drives it.

Frames are buffered per camera in a bounded ring (one window span plus a stride). Window k of a camera
ends at frame (W-1)*step + k*stride and takes every `step`-th frame back from there: the grid is anchored
at frame index 0, not at the first frame this process saw, so a live run, a replay of a recording that
started mid-stream and an offline `perception test` cut the same windows with the same numbers. A camera
first seen at frame i starts with the first grid window that lies wholly at or after i. A frame
missing from the ring (dropped upstream) is replaced by the nearest earlier one. `take_due()` returns,
per camera, only the newest due window (older due windows are stale: skipped), oldest camera first, at
most `max_batch` of them (the newest win). It counts, in the `counters` it is given:
    windows_taken       windows handed out by take_due (the encoder's `busy` compares it with `windows`)
    windows_dropped     stale windows skipped, and windows beyond max_batch
    windows_incomplete  windows the ring no longer reaches back far enough for
    frames_substituted  frames taken from the nearest earlier index
    camera_resets       a camera whose frame index went back (its source restarted)
Cameras are whatever names frames arrive with, so at most `max_cameras` are tracked; beyond that the
least recently seen camera that is not protected (the configured ones) is evicted.
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Callable, Collection, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bus.bounded import BoundedDict
from perception.messages import Frame


@dataclass
class CameraWindows:
    """Per-camera frame ring and window schedule."""

    frames: collections.deque  # of Frame, bounded
    next_end: int | None = None  # frame index that completes the next window
    window: int = 0  # number of the last window emitted (its place on the frame-index grid)
    last_index: int = -1
    s_v: Any = None  # the encoder's visual tokens [1, N, Dv] of the newest window (opaque here)
    s_v_info: dict = field(default_factory=dict)

    @property
    def due(self) -> bool:
        return self.next_end is not None and self.last_index >= self.next_end


@dataclass
class WindowJob:
    cam: str
    window: int
    frames: list[Frame]  # the window's frames, oldest first; copied once, straight into the batch

    @property
    def first(self) -> Frame:
        return self.frames[0]

    @property
    def last(self) -> Frame:
        return self.frames[-1]

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.frames), *self.frames[0].image.shape)  # [T, H, W, 3]


def stack_windows(group: list[WindowJob]) -> np.ndarray:
    """uint8 [B, T, H, W, 3] of jobs of one shape, each frame copied once."""
    out = np.empty((len(group), *group[0].shape), dtype=np.uint8)
    for b, job in enumerate(group):
        for t, frame in enumerate(job.frames):
            out[b, t] = frame.image
    return out


class WindowSchedule:
    """Every camera's frame ring and next window; `add(frame)` then `take_due()` (see the module docstring).
    `on_bad_window(cam, error)` hears of a window skipped because its frames differ in size."""

    def __init__(
        self,
        window_frames: int,
        frame_step: int,
        stride_frames: int,
        max_batch: int,
        counters: MutableMapping[str, int],
        *,
        max_cameras: int,
        protected: Collection[str] = (),
        on_evict: Callable[[str, CameraWindows], None] | None = None,
        on_bad_window: Callable[[str, ValueError], None] | None = None,
    ) -> None:
        if min(window_frames, frame_step, stride_frames, max_batch, max_cameras) < 1:
            raise ValueError("window_frames, frame_step, stride_frames, max_batch and max_cameras must be >= 1")
        self.W, self.step, self.stride, self.max_batch = window_frames, frame_step, stride_frames, max_batch
        self.span = (self.W - 1) * self.step + 1  # camera frames covered by one window
        self.counters = counters
        for key in ("windows_taken", "windows_dropped", "windows_incomplete", "frames_substituted"):
            counters[key] += 0  # created here: a caller's stats may iterate them from another thread
        self.on_bad_window = on_bad_window
        keep = frozenset(protected)
        # max(): a hand-built config with more protected cameras than max_cameras evicts none of them forever
        self.cams: BoundedDict[str, CameraWindows] = BoundedDict(
            max(max_cameras, len(keep)), protected=keep.__contains__, on_evict=on_evict
        )

    def add(self, frame: Frame, standby: bool = False) -> bool:
        """Buffer one frame; True if its camera now has a window due. `standby`: keep the ring but let no
        window fall due (another encoder worker owns the camera; this one can take over with a full ring)."""
        cam = self.cams.get(frame.cam)
        if cam is None or frame.index <= cam.last_index:  # new camera, or its source restarted
            if cam is not None:
                self.counters["camera_resets"] += 1
            cam = self.cams[frame.cam] = CameraWindows(collections.deque(maxlen=self.span + self.stride))
            cam.next_end = self.end_of(-(-frame.index // self.stride))  # the first grid window from here on
        cam.frames.append(frame)
        cam.last_index = frame.index
        if standby and cam.due:  # skip to the grid window after this frame: nothing stale to count later
            cam.next_end = self.end_of((frame.index - self.span + 1) // self.stride + 1)
            return False
        return cam.due

    def end_of(self, window: int) -> int:
        """The frame index that completes window number `window` (window 0 ends at frame span - 1)."""
        return self.span - 1 + window * self.stride

    def any_due(self) -> bool:
        return any(c.due for c in self.cams.values())

    def take_due(self) -> list[WindowJob]:
        """The newest due window of each camera (stale ones skipped), oldest camera first, up to max_batch."""
        jobs = []
        for name, cam in self.cams.items():
            if not cam.due:
                continue
            assert cam.next_end is not None
            behind = (cam.last_index - cam.next_end) // self.stride  # complete windows we are late for
            if behind:
                self.counters["windows_dropped"] += behind
            end = cam.next_end + behind * self.stride
            cam.next_end = end + self.stride
            try:
                frames = self.window_frames(cam, end)
            except ValueError as exc:  # frames of different sizes in one window: skip it, keep going
                if self.on_bad_window is not None:
                    self.on_bad_window(name, exc)
                continue
            if frames is None:
                self.counters["windows_incomplete"] += 1
                continue
            cam.window = (end - self.span + 1) // self.stride
            jobs.append(WindowJob(name, cam.window, frames))
        jobs.sort(key=lambda j: j.last.t_capture_ns)
        if len(jobs) > self.max_batch:
            self.counters["windows_dropped"] += len(jobs) - self.max_batch
            jobs = jobs[-self.max_batch :]  # newest win
        self.counters["windows_taken"] += len(jobs)
        return jobs

    def window_frames(self, cam: CameraWindows, end: int) -> list[Frame] | None:
        """Frames end-(W-1)*step ... end by step; a missing frame (dropped upstream) -> nearest earlier one;
        None when the ring no longer reaches back far enough. ValueError if their sizes differ."""
        frames, newest = cam.frames, cam.frames[-1].index
        oldest = frames[0].index
        contiguous = newest - oldest == len(frames) - 1  # the usual case: found by position, no search
        # otherwise by binary search over the ring's increasing indices (a gap may be 2**40 frames wide:
        # counting down through it once froze the model thread)
        indices = None if contiguous else [f.index for f in frames]
        picked = []
        for target in range(end - (self.W - 1) * self.step, end + 1, self.step):
            if target < oldest:
                return None
            if indices is None:
                picked.append(frames[target - oldest])
                continue
            k = bisect.bisect_right(indices, target) - 1  # the nearest frame at or before target
            if indices[k] != target:
                self.counters["frames_substituted"] += 1
            picked.append(frames[k])
        shape = picked[0].image.shape
        if any(f.image.shape != shape for f in picked):
            raise ValueError(f"frames of different sizes in one window: {sorted({f.image.shape for f in picked})}")
        return picked

"""What every viewer does with the pipeline's messages, live or from a recording, and the sink it draws on.

    feed = Feed(sink, labels=["a shape grows", ...], max_fps=10)
    feed.push(topic, msg, t_ns)          # every message, in order (frames too, for a recording)

A `ViewSink` is one viewer's drawing surface: the Foxglove bridge (perception/viewers/foxglove_bridge.py),
the Foxglove export (foxglove_export.py) and Rerun (rerun_view.py). The feed decides what reaches it:

- frames: at most `max_fps` per camera, counted on the frames' own capture times (so a recording gives the
  same frames on every run), only while the sink wants that camera's frames (a Foxglove client subscribed),
  compressed once (PNG when small, else JPEG: perception/viewers/images.py);
- captions, events, ground truth and stats: as they come;
- each window's embedding: its cosine to every watch phrase on its camera and to the label texts, once
  their text embeddings are known (perception/viewers/texts.py).

`t_ns` is when the viewer got the message (live: now; recording: the recorder's log time); the messages'
own times (`t_capture_ns`, `stream_s`, segment spans) travel inside them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from bus.mcapfile import RecordingError
from bus.message import Message, Stats
from perception.messages import Caption, Embedding, Event, Frame, GroundTruthSegment, WatchList
from perception.nodes.watches import Watch
from perception.viewers import defaults
from perception.viewers.images import FrameError, ImageEncoder
from perception.viewers.texts import TextTable, WatchSet, cosines

DEFAULT_MAX_FPS = defaults.MAX_FPS


class ViewSink:
    """A viewer's drawing surface; every method is optional (the default draws nothing)."""

    def wants_frames(self, cam: str) -> bool:
        """False skips compressing this camera's frames (nobody looks at them)."""
        return True

    def frame(self, frame: Frame, data: bytes, fmt: str, t_ns: int) -> None:
        """One frame, compressed: `data` is a `fmt` ("png" or "jpeg") image."""

    def caption(self, caption: Caption, t_ns: int) -> None: ...

    def event(self, event: Event, t_ns: int) -> None: ...

    def truth(self, segment: GroundTruthSegment, t_ns: int) -> None: ...

    def scores(
        self,
        emb: Embedding,
        watches: list[tuple[Watch, float]],
        labels: list[str],
        label_scores: np.ndarray | None,
        t_ns: int,
    ) -> None:
        """One window: (watch, cosine) per watch on its camera; the label cosines [L] (None until known)."""

    def stats(self, stats: Stats, t_ns: int) -> None: ...

    def close(self) -> None: ...


class FrameGate:
    """`max_fps` frames per camera on average, by the frames' capture times: a frame is taken once its slot
    is due (within a quarter slot, so a 30 fps camera's jittered frames give 15 fps at 15, not 10); slots
    do not pile up while frames are missing, and a capture time going back starts over."""

    def __init__(self, max_fps: float) -> None:
        self.gap_ns = int(1e9 / max_fps) if max_fps > 0 else 0
        self._next: dict[str, int] = {}  # camera -> when its next slot is due

    def take(self, frame: Frame) -> bool:
        t = frame.t_capture_ns
        due = self._next.get(frame.cam)
        if due is not None and due - self.gap_ns <= t < due - self.gap_ns // 4:
            return False
        late = due is None or t < due - self.gap_ns or t - due > self.gap_ns
        self._next[frame.cam] = t + self.gap_ns if late else due + self.gap_ns
        return True


class Feed:
    """Routes messages to a sink: frames gated and encoded, embeddings scored. One thread at a time."""

    def __init__(
        self,
        sink: ViewSink,
        *,
        labels: list[str] | None = None,
        max_fps: float = DEFAULT_MAX_FPS,
        watches: WatchSet | None = None,
        texts: TextTable | None = None,
        counters: Counter | None = None,
    ) -> None:
        self.sink = sink
        self.labels = list(labels or [])
        self.watches = watches if watches is not None else WatchSet()
        self.texts = texts if texts is not None else TextTable()
        self.gate = FrameGate(max_fps)
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self._encoders: dict[str, ImageEncoder] = {}
        self._full_cams: set[str] = set()  # cameras seen on frames_full/

    @property
    def wanted_texts(self) -> list[str]:
        """Texts whose embeddings the scores need (labels, then watch phrases)."""
        return list(dict.fromkeys([*self.labels, *self.watches.phrases]))

    # -- frames: the caller may run `frame_wanted` on its loop and `frame` on a worker thread ---------------

    def frame_wanted(self, frame: Frame, full: bool = False) -> bool:
        """`full`: a frames_full/<cam> frame. Once a camera sends those (capture.full_fps), its frames/
        (the encoder's small copies) are not shown: a viewer wants the camera's pixels."""
        if full:
            self._full_cams.add(frame.cam)
        elif frame.cam in self._full_cams:
            self.counters["frames_small_skipped"] += 1
            return False
        if not self.sink.wants_frames(frame.cam):
            self.counters["frames_unwatched"] += 1
            return False
        if not self.gate.take(frame):
            self.counters["frames_rate_limited"] += 1
            return False
        return True

    def frame(self, frame: Frame, t_ns: int) -> None:
        """Encode and draw one frame that `frame_wanted` let through (blocking: image encoding)."""
        encoder = self._encoders.get(frame.cam)
        if encoder is None:
            encoder = self._encoders[frame.cam] = ImageEncoder()
        data, fmt = encoder.encode(frame.image)
        self.sink.frame(frame, data, fmt, t_ns)
        self.counters["frames_sent"] += 1
        self.counters["frame_bytes"] += len(data)

    # -- everything ---------------------------------------------------------------------------------------

    def push(self, topic: str, msg: Message, t_ns: int) -> None:
        """One message, frames included (encoded here, on the caller's thread)."""
        if isinstance(msg, Frame):
            if self.frame_wanted(msg, full=topic.startswith("frames_full/")):
                try:
                    self.frame(msg, t_ns)
                except FrameError as exc:  # a recording's frame no viewer can show: one line, not a traceback
                    raise RecordingError(f"{topic[:80]} frame #{msg.index}: {exc}") from None
        else:
            self.push_other(msg, t_ns)

    def push_other(self, msg: Any, t_ns: int) -> None:
        """Any message but a frame: cheap, so a live viewer handles it on its loop."""
        if isinstance(msg, Caption):
            self.sink.caption(msg, t_ns)
        elif isinstance(msg, Event):
            self.sink.event(msg, t_ns)
        elif isinstance(msg, Embedding):
            self._scores(msg, t_ns)
        elif isinstance(msg, GroundTruthSegment):
            self.sink.truth(msg, t_ns)
        elif isinstance(msg, Stats):
            self.sink.stats(msg, t_ns)
        elif isinstance(msg, WatchList):
            if self.watches.update(msg.watches):
                self.counters["watch_lists_changed"] += 1
        else:
            self.counters["ignored"] += 1
            return
        self.counters["messages"] += 1

    def _scores(self, emb: Embedding, t_ns: int) -> None:
        watches = self.watches.scores(emb.cam, emb.embedding, self.texts)
        label_scores = None
        table = self.texts.matrix(self.labels) if self.labels else None
        if table is not None:
            if table.shape[1] == emb.embedding.shape[-1]:
                label_scores = cosines(emb.embedding, table)
            else:
                self.counters["label_dim_mismatch"] += 1
        self.sink.scores(emb, watches, self.labels, label_scores, t_ns)
        self.counters["windows_scored"] += 1

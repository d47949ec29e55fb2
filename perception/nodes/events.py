"""Events node: online selective decoding per embedding stream, plus the watch list.

Each camera's embeddings go through `perception.eval.online.OnlineSegmenter`. When it declares a boundary,
the segment before it is closed: its mean embedding (re-normalised) is classified against the label
vocabulary and published as an `Event(kind="segment")` on events/<cam>, and a `DecodeRequest` goes to
decode/<cam>. Watch phrases are scored against every embedding (cosine to the phrase's text embedding)
with hysteresis: reaching `enter` or falling to `leave` is an `Event(kind="watch")`.

Segment lengths are configured in seconds of stream time (`min_len_s`, `max_len_s`) and turned into
segmenter steps per camera from its window cadence, the stream time between two windows:
- a synthetic or OpenCV camera in `pipeline.cameras`: `encoder.stride_frames / camera.fps` (the rate the
  capture node renders it at, or asks the device for);
- a file camera: measured, because the capture node paces a file at the container's own frame rate
  (`camera.fps` only when the container has none), so the configured fps need not be what the encoder sees;
- a stream from a camera not in the config (a replayed recording): measured.
Measured = from the window end times (stream seconds) of the stream's first `MEASURED_WINDOWS`
embeddings, which wait, unsegmented, until then; if those cannot tell (no increasing stream times), the
camera's own configured cadence, or else the first configured camera's.

Segment ids are unique per camera across events-node restarts and pipeline runs, without shared state: a
stream's first id is the capture time of its first window's first frame, in milliseconds since the epoch,
and each closed segment adds one (a camera restart keeps counting). A restarted node thus numbers above
every id it gave before, as long as a stream closed fewer segments than milliseconds passed (a segment
spans at least one window), so the world never attaches a caption to an older segment of the same id;
and because the id comes from the frames, not from this node's clock, replaying a recording gives the
same ids every time. Watch events carry the id of
the segment still open.

At most `events.max_cameras` streams are kept: camera names come from publishers, so the least recently
heard stream beyond that is dropped (counted in `streams_evicted`); the configured cameras never are.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from bus.bounded import BoundedDict
from bus.codec import Envelope
from perception.eval.online import OnlineSegmenter, OnlineSegmenterConfig, segment_steps
from perception.messages import DecodeRequest, Embedding, Event, LabelScore
from perception.nodes.config import CameraConfig, EncoderConfig
from perception.nodes.models import load_model
from perception.nodes.runtime import Node

MEASURED_WINDOWS = 4  # embeddings whose end times give an unconfigured stream's cadence (3 gaps)
UNBOUNDED_RECENT = 2000  # embeddings kept for a segment's mean when max_len_s is None


def window_cadence_s(camera: CameraConfig, encoder: EncoderConfig) -> float:
    """Stream seconds between two of a camera's windows at its configured fps (one every `stride_frames`)."""
    return encoder.stride_frames / camera.fps


def measured_cadence_s(end_s: Sequence[float]) -> float | None:
    """The smallest positive gap between successive window end times (stream seconds), or None if none is.
    The smallest, because a window the encoder skipped while behind widens a gap to a multiple of the
    stride, and never narrows one."""
    gaps = [b - a for a, b in itertools.pairwise(end_s) if b > a]
    return min(gaps) if gaps else None


def default_labels() -> list[str]:
    """ShapesWorld's canonical captions, one per (colour, shape, action) (change_colour without target)."""
    from perception.data.vocab import ACTION_LABELS, ALL_COMBOS

    return [f"the {c} {s} {ACTION_LABELS[a]}" for c, s, a in ALL_COMBOS]


def first_segment_id(first: Embedding) -> int:
    """A new stream's first segment id (see the module docstring)."""
    return max(0, first.start_ns // 1_000_000)


@dataclass
class Stream:
    """One camera's segmenter and the embeddings since its current segment started (bounded)."""

    # (step, Embedding) for steps not yet in a closed segment; bounded once the segmenter exists
    recent: collections.deque = field(default_factory=collections.deque)
    segmenter: OnlineSegmenter | None = None  # None while the cadence is being measured
    cadence_from: str = ""  # "config", "measured" or "fallback"
    step: int = -1
    segment_id: int = 0  # the open segment's id; set from the stream's first window (first_segment_id)
    last_t: float = float("-inf")
    watch_active: dict[str, bool] = field(default_factory=dict)


class EventsNode(Node):
    name = "events"
    topics = ("embeddings/",)

    async def setup(self) -> None:
        ev = self.config.pipeline.events
        self.model, _ = await asyncio.to_thread(load_model, self.config.model, 1)
        self.labels = ev.labels or default_labels()
        phrases = [w.label for w in ev.watch]
        self.label_emb = await asyncio.to_thread(self._embed, self.labels)  # [L, D]
        self.watch_emb = await asyncio.to_thread(self._embed, phrases) if phrases else None  # [K, D]
        self.dim = self.label_emb.shape[1]
        # min_len/max_len are set per camera from its cadence (_start)
        self.seg_cfg = OnlineSegmenterConfig(threshold=ev.threshold, window=ev.window, confirm=ev.confirm)
        self.cameras = {c.name: c for c in self.config.pipeline.cameras}
        if len(self.cameras) > ev.max_cameras:
            raise ValueError(f"events.max_cameras ({ev.max_cameras}) is below the number of configured "
                             f"cameras ({len(self.cameras)})")
        self.streams: BoundedDict[str, Stream] = BoundedDict(
            ev.max_cameras, protected=self.cameras.__contains__, on_evict=self._evicted)

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.model.embed_text(texts).float().cpu().numpy()

    def _evicted(self, cam: str, s: Stream) -> None:
        """A stream fell out of the bound (more cameras than `max_cameras`): its open segment is lost."""
        self.counters["streams_evicted"] += 1
        suppressed = self._errors.should_log("streams_evicted")
        if suppressed is not None:
            self.log.warning("too many cameras: dropped the least recently heard stream", camera=cam[:80],
                             max_cameras=self.config.pipeline.events.max_cameras, suppressed=suppressed)

    def _stream(self, cam: str, first: Embedding) -> Stream:
        s = self.streams[cam] = Stream(segment_id=first_segment_id(first))
        camera = self.cameras.get(cam)
        if camera is not None and camera.kind != "file":  # a file's own frame rate wins over camera.fps
            self._start(s, cam, window_cadence_s(camera, self.config.pipeline.encoder), "config")
        return s

    def _start(self, s: Stream, cam: str, cadence_s: float, source: str) -> None:
        """Give `s` its segmenter, with the configured seconds as steps at `cadence_s` seconds per step."""
        ev = self.config.pipeline.events
        min_len, max_len = segment_steps(ev.min_len_s, ev.max_len_s, cadence_s)
        cfg = replace(self.seg_cfg, min_len=min_len, max_len=max_len)
        s.segmenter = OnlineSegmenter(cfg)
        s.recent = collections.deque(s.recent, maxlen=(max_len or UNBOUNDED_RECENT) + cfg.window + cfg.confirm + 1)
        s.cadence_from = source
        self.log.info("segment lengths", camera=cam, cadence_s=round(cadence_s, 6), cadence_from=source,
                      min_len_steps=min_len, max_len_steps=max_len)

    def _start_measured(self, s: Stream, cam: str) -> None:
        """Start `s` at the cadence its first windows show, then segment those windows."""
        backlog = [e for _, e in s.recent]
        cadence, source = measured_cadence_s([e.end_s for e in backlog]), "measured"
        if cadence is None:
            camera = self.cameras.get(cam) or self.config.pipeline.cameras[0]
            cadence, source = window_cadence_s(camera, self.config.pipeline.encoder), "fallback"
            self.log.warning("no increasing stream times to measure the window cadence from; using a "
                             "configured camera's", camera=cam, configured_camera=camera.name)
        self._start(s, cam, cadence, source)
        for emb in backlog:
            self._push(s, emb, emb.end_ns / 1e9, np.asarray(emb.embedding, dtype=np.float32))

    def _push(self, s: Stream, emb: Embedding, t: float, x: np.ndarray) -> None:
        """One step of `s`'s segmenter (t: window end, seconds; x: [D]); closes the segments it ends."""
        for boundary in s.segmenter.push(t, x):
            self._close_segment(s, emb, boundary.index)

    async def process(self, env: Envelope) -> None:
        emb = env.msg
        if not isinstance(emb, Embedding):
            self.counters["ignored"] += 1
            return
        x = np.asarray(emb.embedding, dtype=np.float32)
        if x.shape != (self.dim,):  # checked before it is kept: a segment's mean must not meet it later
            raise ValueError(f"{emb} does not match the model's D={self.dim}")
        if not np.isfinite(x).all():  # one NaN would poison its segment's mean and every label score
            raise ValueError(f"{emb} has non-finite values")
        s = self.streams.get(emb.cam) or self._stream(emb.cam, emb)
        t = emb.end_ns / 1e9
        if t <= s.last_t:  # the camera restarted: its old segment cannot continue
            self.counters["stream_resets"] += 1
            segment_id = s.segment_id
            s = self._stream(emb.cam, emb)
            s.segment_id = segment_id
        s.last_t = t
        s.step += 1
        s.recent.append((s.step, emb))
        self.counters["embeddings"] += 1
        if s.segmenter is not None:
            self._push(s, emb, t, x)
        elif len(s.recent) >= MEASURED_WINDOWS:
            self._start_measured(s, emb.cam)
        if self.watch_emb is not None:
            self._watch(s, emb, x)

    async def teardown(self) -> None:
        """Close every open segment, so that a stopping pipeline still captions what it saw last."""
        for s in self.streams.values():
            if s.recent:
                self._close_segment(s, s.recent[-1][1], s.step + 1)

    def _close_segment(self, s: Stream, trigger: Embedding, boundary: int) -> None:
        """Publish the segment of the windows before step `boundary`. Its span runs from its first window's
        centre to the next segment's first window's centre (windows overlap; centres do not), or to its
        last window's centre when no next window exists yet (a flush at shutdown)."""
        members = [e for step, e in s.recent if step < boundary]
        while s.recent and s.recent[0][0] < boundary:
            s.recent.popleft()
        if not members:
            return
        nxt = s.recent[0][1] if s.recent else members[-1]
        mean = np.mean([m.embedding for m in members], axis=0).astype(np.float32)
        mean /= np.linalg.norm(mean) + 1e-12
        top = self.config.pipeline.events.top_labels
        scores = self.label_emb @ mean
        best = np.argsort(-scores)[:top]
        labels = [LabelScore(label=self.labels[i], score=round(float(scores[i]), 4)) for i in best]
        first = members[0]
        span = dict(cam=trigger.cam, segment_id=s.segment_id,
                    start_ns=(first.start_ns + first.end_ns) // 2, end_ns=(nxt.start_ns + nxt.end_ns) // 2,
                    start_s=(first.start_s + first.end_s) / 2, end_s=(nxt.start_s + nxt.end_s) / 2)
        self.publish(f"events/{trigger.cam}", Event(kind="segment", labels=labels, t_capture_ns=trigger.t_capture_ns,
                                                    embedding=mean, **span))
        self.publish(f"decode/{trigger.cam}", DecodeRequest(t_capture_ns=trigger.t_capture_ns, embedding=mean, **span))
        self.counters["segments"] += 1
        s.segment_id += 1

    def _watch(self, s: Stream, emb: Embedding, x: np.ndarray) -> None:
        scores = self.watch_emb @ (x / (np.linalg.norm(x) + 1e-12))
        for w, score in zip(self.config.pipeline.events.watch, scores):
            active = s.watch_active.get(w.label, False)
            if (not active and score >= w.enter) or (active and score <= w.leave):
                s.watch_active[w.label] = not active
                self.publish(f"events/{emb.cam}", Event(
                    cam=emb.cam, kind="watch", segment_id=s.segment_id, start_ns=emb.start_ns, end_ns=emb.end_ns,
                    start_s=emb.start_s, end_s=emb.end_s, watch=w.label, active=not active,
                    labels=[LabelScore(label=w.label, score=round(float(score), 4))],
                    t_capture_ns=emb.t_capture_ns, embedding=x,
                ))
                self.counters["watch_events"] += 1


NODE = EventsNode

"""The events node's bookkeeping, apart from the process: embeddings in, closed segments and watch crossings
out, as the messages the node publishes. No torch, no sockets: tests/nodes/test_segments.py drives it.

`SegmentTracker` keeps one `SegmentStream` per camera (at most `events.max_cameras`, the least recently
heard beyond that dropped; the configured cameras never). A stream runs the online segmenter
(perception/nodes/segmenter.py) on its window end times and, at each boundary, closes the segment before
it: its mean embedding (re-normalised) is scored against the label vocabulary -> an `Event(kind="segment")`
and a `DecodeRequest`. Watch phrases are scored against every embedding of the cameras they apply to, with
hysteresis per (camera, watch id) -> an `Event(kind="watch")` naming the watch when a phrase rises to
`enter` or falls to `leave`. `SegmentTracker.set_watch` swaps the watch list in while streams run (the
runtime watches from the world): new watches start inactive, removed ones stop, kept ones keep their state.

Segment lengths are seconds of stream time (`min_len_s`, `max_len_s`), turned into segmenter steps from the
stream's window cadence: the configured one (`window_cadence_s`) where the camera's config tells it, else
measured from the end times of the stream's first `MEASURED_WINDOWS` embeddings (which wait, unsegmented,
until then), else (no increasing stream times) the camera's own configured cadence or the first camera's.
Segment ids: see `first_segment_id` and perception/nodes/events.py.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np

from bus.bounded import BoundedDict
from perception.messages import DecodeRequest, Embedding, Event, LabelScore
from perception.nodes.config import CameraConfig, EncoderConfig, EventsConfig, WatchConfig
from perception.nodes.segmenter import OnlineSegmenter, OnlineSegmenterConfig, segment_steps
from perception.nodes.watches import Watch

MEASURED_WINDOWS = 4  # embeddings whose end times give an unconfigured stream's cadence (3 gaps)
UNBOUNDED_RECENT = 2000  # embeddings kept for a segment's mean when max_len_s is None

Published = Event | DecodeRequest


def window_cadence_s(camera: CameraConfig, encoder: EncoderConfig) -> float:
    """Stream seconds between two of a camera's windows at its configured fps (one every `stride_frames`)."""
    return encoder.stride_frames / camera.fps


def measured_cadence_s(end_s: Sequence[float]) -> float | None:
    """The smallest positive gap between successive window end times (stream seconds), or None if none is.
    The smallest, because a window the encoder skipped while behind widens a gap to a multiple of the
    stride, and never narrows one."""
    gaps = [b - a for a, b in itertools.pairwise(end_s) if b > a]
    return min(gaps) if gaps else None


def first_segment_id(first: Embedding) -> int:
    """A new stream's first segment id: its first window's first frame's capture time, ms since the epoch."""
    return max(0, first.start_ns // 1_000_000)


@dataclass(frozen=True)
class Vocabulary:
    """What segments and embeddings are scored against: label texts with their unit text embeddings [L, D],
    and the watch list with its phrases' embeddings [K, D] (None without a watch list). Configured watches
    (`WatchConfig`) become `Watch`es with the id "config:<label>"."""

    labels: Sequence[str]
    label_emb: np.ndarray  # float32 [L, D]
    watch: Sequence[Watch | WatchConfig] = ()
    watch_emb: np.ndarray | None = None  # float32 [K, D], row k for watch[k]

    def __post_init__(self) -> None:
        watch = tuple(Watch.configured(w) if isinstance(w, WatchConfig) else w for w in self.watch)
        object.__setattr__(self, "watch", watch)
        if self.label_emb.ndim != 2 or self.label_emb.shape[0] != len(self.labels):
            raise ValueError(f"label embeddings {self.label_emb.shape} for {len(self.labels)} labels")
        if self.watch and (self.watch_emb is None or self.watch_emb.shape != (len(self.watch), self.dim)):
            raise ValueError(
                f"watch embeddings {getattr(self.watch_emb, 'shape', None)} for {len(self.watch)} "
                f"phrases of D={self.dim}"
            )

    @property
    def dim(self) -> int:
        return int(self.label_emb.shape[1])

    def with_watch(self, watch: Sequence[Watch], watch_emb: np.ndarray | None) -> Vocabulary:
        """The same labels with another watch list."""
        return dataclasses.replace(self, watch=tuple(watch), watch_emb=watch_emb if watch else None)


@dataclass(frozen=True)
class StreamStart:
    """A stream's segmenter started: the cadence its steps were sized from, and where that came from."""

    cam: str
    cadence_s: float
    cadence_from: str  # "config", "measured" or "fallback"
    min_len: int  # steps
    max_len: int | None


class SegmentStream:
    """One camera's segmenter and the embeddings since its current segment started (bounded).

    `push(emb, x)` takes the next window (x: its checked float32 embedding [D]) and returns what to publish."""

    def __init__(
        self,
        cam: str,
        first: Embedding,
        events: EventsConfig,
        vocab: Vocabulary,
        cadence_s: float | None,
        fallback_cadence_s: float,
        on_start: Callable[[StreamStart], None] | None = None,
    ) -> None:
        self.cam = cam
        self.events = events
        self.vocab = vocab
        self.fallback_cadence_s = fallback_cadence_s
        self.on_start = on_start
        # (step, Embedding) for steps not yet in a closed segment; bounded once the segmenter exists
        self.recent: collections.deque[tuple[int, Embedding]] = collections.deque()
        self.segmenter: OnlineSegmenter | None = None  # None while the cadence is being measured
        self.cadence_from = ""  # "config", "measured" or "fallback"
        self.step = -1
        self.segment_id = first_segment_id(first)  # the open segment's id
        self.last_t = float("-inf")
        self.watch_active: dict[str, bool] = {}  # watch id -> active
        self._watch_rows: tuple[Vocabulary | None, list[Watch], np.ndarray | None] = (None, [], None)
        if cadence_s is not None:
            self._start(cadence_s, "config")

    def _start(self, cadence_s: float, source: str) -> None:
        """The segmenter, with the configured seconds as steps at `cadence_s` seconds per step."""
        ev = self.events
        min_len, max_len = segment_steps(ev.min_len_s, ev.max_len_s, cadence_s)
        cfg = OnlineSegmenterConfig(
            threshold=ev.threshold, window=ev.window, confirm=ev.confirm, min_len=min_len, max_len=max_len
        )
        self.segmenter = OnlineSegmenter(cfg)
        self.recent = collections.deque(
            self.recent, maxlen=(max_len or UNBOUNDED_RECENT) + cfg.window + cfg.confirm + 1
        )
        self.cadence_from = source
        if self.on_start is not None:
            self.on_start(StreamStart(self.cam, cadence_s, source, min_len, max_len))

    def push(self, emb: Embedding, x: np.ndarray) -> list[Published]:
        """One window (x: float32 [D], finite, of the vocabulary's D): segments it closes, watch crossings."""
        t = emb.end_ns / 1e9
        self.last_t = t
        self.step += 1
        self.recent.append((self.step, emb))
        out: list[Published] = []
        if self.segmenter is not None:
            out += self._segment(emb, t, x)
        elif len(self.recent) >= MEASURED_WINDOWS:
            out += self._start_measured()
        if self.vocab.watch_emb is not None:
            out += self._watch(emb, x)
        return out

    def _start_measured(self) -> list[Published]:
        """Start at the cadence the first windows show, then segment those windows."""
        backlog = [e for _, e in self.recent]
        cadence, source = measured_cadence_s([e.end_s for e in backlog]), "measured"
        if cadence is None:
            cadence, source = self.fallback_cadence_s, "fallback"
        self._start(cadence, source)
        out: list[Published] = []
        for emb in backlog:
            out += self._segment(emb, emb.end_ns / 1e9, np.asarray(emb.embedding, dtype=np.float32))
        return out

    def _segment(self, emb: Embedding, t: float, x: np.ndarray) -> list[Published]:
        assert self.segmenter is not None
        out: list[Published] = []
        for boundary in self.segmenter.push(t, x):
            out += self.close(emb, boundary.index)
        return out

    def flush(self) -> list[Published]:
        """Close the open segment (a stopping pipeline still captions what it saw last)."""
        return self.close(self.recent[-1][1], self.step + 1) if self.recent else []

    def close(self, trigger: Embedding, boundary: int) -> list[Published]:
        """The segment of the windows before step `boundary`, as an Event and a DecodeRequest. Its span runs
        from its first window's centre to the next segment's first window's centre (windows overlap; centres
        do not), or to its last window's centre when no next window exists yet (a flush at shutdown)."""
        members = [e for step, e in self.recent if step < boundary]
        while self.recent and self.recent[0][0] < boundary:
            self.recent.popleft()
        if not members:
            return []
        nxt = self.recent[0][1] if self.recent else members[-1]
        mean = np.mean([m.embedding for m in members], axis=0).astype(np.float32)
        mean /= np.linalg.norm(mean) + 1e-12
        scores = self.vocab.label_emb @ mean
        best = np.argsort(-scores)[: self.events.top_labels]
        labels = [LabelScore(label=self.vocab.labels[i], score=round(float(scores[i]), 4)) for i in best]
        first = members[0]
        span = dict(
            cam=trigger.cam,
            segment_id=self.segment_id,
            start_ns=(first.start_ns + first.end_ns) // 2,
            end_ns=(nxt.start_ns + nxt.end_ns) // 2,
            start_s=(first.start_s + first.end_s) / 2,
            end_s=(nxt.start_s + nxt.end_s) / 2,
        )
        self.segment_id += 1
        return [
            Event(kind="segment", labels=labels, t_capture_ns=trigger.t_capture_ns, embedding=mean, **span),
            DecodeRequest(t_capture_ns=trigger.t_capture_ns, embedding=mean, **span),
        ]

    def _applicable(self) -> tuple[list[Watch], np.ndarray | None]:
        """The watches that apply to this camera and their embeddings (recomputed when the list changes)."""
        vocab, watch, emb = self._watch_rows
        if vocab is not self.vocab:
            rows = [k for k, w in enumerate(self.vocab.watch) if w.applies_to(self.cam)]
            watch = [self.vocab.watch[k] for k in rows]
            emb = self.vocab.watch_emb[rows] if rows and self.vocab.watch_emb is not None else None
            self._watch_rows = (self.vocab, watch, emb)
        return watch, emb

    def forget_watches(self, keep: set[str]) -> None:
        """Drop the state of watches no longer listed."""
        for wid in [k for k in self.watch_active if k not in keep]:
            del self.watch_active[wid]

    def _watch(self, emb: Embedding, x: np.ndarray) -> list[Published]:
        watch, watch_emb = self._applicable()
        if watch_emb is None:
            return []
        scores = watch_emb @ (x / (np.linalg.norm(x) + 1e-12))
        out: list[Published] = []
        for w, score in zip(watch, scores):
            active = self.watch_active.get(w.id, False)
            if (not active and score >= w.enter) or (active and score <= w.leave):
                self.watch_active[w.id] = not active
                out.append(
                    Event(
                        cam=emb.cam,
                        kind="watch",
                        segment_id=self.segment_id,
                        start_ns=emb.start_ns,
                        end_ns=emb.end_ns,
                        start_s=emb.start_s,
                        end_s=emb.end_s,
                        watch=w.phrase,
                        watch_id=w.id,
                        active=not active,
                        labels=[LabelScore(label=w.phrase, score=round(float(score), 4))],
                        t_capture_ns=emb.t_capture_ns,
                        embedding=x,
                    )
                )
        return out


class SegmentTracker:
    """Every camera's `SegmentStream`, bounded. `push(emb)` -> the messages to publish, in order.

    Counts, in the `counters` it is given: embeddings, segments, watch_events, stream_resets (a camera whose
    times went back: its open segment is dropped, its ids keep counting) and streams_evicted."""

    def __init__(
        self,
        events: EventsConfig,
        encoder: EncoderConfig,
        cameras: Sequence[CameraConfig],
        vocab: Vocabulary,
        counters: MutableMapping[str, int],
        *,
        on_start: Callable[[StreamStart], None] | None = None,
        on_evict: Callable[[str, SegmentStream], None] | None = None,
    ) -> None:
        self.events, self.encoder, self.vocab, self.counters = events, encoder, vocab, counters
        self.cameras: Mapping[str, CameraConfig] = {c.name: c for c in cameras}
        if len(self.cameras) > events.max_cameras:
            raise ValueError(
                f"events.max_cameras ({events.max_cameras}) is below the number of configured "
                f"cameras ({len(self.cameras)})"
            )
        self._first_camera = cameras[0]
        self.on_start = on_start
        self._on_evict = on_evict
        self.streams: BoundedDict[str, SegmentStream] = BoundedDict(
            events.max_cameras, protected=self.cameras.__contains__, on_evict=self._evicted
        )

    @property
    def dim(self) -> int:
        return self.vocab.dim

    def set_watch(self, watch: Sequence[Watch], watch_emb: np.ndarray | None) -> None:
        """Score `watch` (embeddings [K, D]) from the next embedding on, in every stream: a watch whose id
        was listed keeps its state, a new one starts inactive, one no longer listed stops."""
        self.vocab = self.vocab.with_watch(watch, watch_emb)
        keep = {w.id for w in watch}
        for s in self.streams.values():
            s.vocab = self.vocab
            s.forget_watches(keep)

    def _evicted(self, cam: str, stream: SegmentStream) -> None:
        self.counters["streams_evicted"] += 1
        if self._on_evict is not None:
            self._on_evict(cam, stream)

    def _new_stream(self, cam: str, first: Embedding) -> SegmentStream:
        camera = self.cameras.get(cam)
        cadence = None
        if camera is not None and not camera.rate_from_source:  # e.g. a file's own frame rate wins over fps
            cadence = window_cadence_s(camera, self.encoder)
        fallback = window_cadence_s(camera or self._first_camera, self.encoder)
        s = self.streams[cam] = SegmentStream(cam, first, self.events, self.vocab, cadence, fallback, self.on_start)
        return s

    def check(self, emb: Embedding) -> np.ndarray:
        """The embedding as float32 [D]; ValueError before it is kept if it has another D or is not finite
        (a segment's mean must never meet it; one NaN would poison every label score)."""
        x = np.asarray(emb.embedding, dtype=np.float32)
        if x.shape != (self.dim,):
            raise ValueError(f"{emb} does not match the model's D={self.dim}")
        if not np.isfinite(x).all():
            raise ValueError(f"{emb} has non-finite values")
        return x

    def push(self, emb: Embedding) -> list[Published]:
        x = self.check(emb)
        s = self.streams.get(emb.cam) or self._new_stream(emb.cam, emb)
        if emb.end_ns / 1e9 <= s.last_t:  # the camera restarted: its old segment cannot continue
            self.counters["stream_resets"] += 1
            segment_id = s.segment_id
            s = self._new_stream(emb.cam, emb)
            s.segment_id = segment_id
        self.counters["embeddings"] += 1
        return self._count(s.push(emb, x))

    def flush(self) -> list[Published]:
        """Close every stream's open segment."""
        out: list[Published] = []
        for s in self.streams.values():
            out += s.flush()
        return self._count(out)

    def _count(self, out: list[Published]) -> list[Published]:
        for msg in out:
            if isinstance(msg, Event):
                self.counters["segments" if msg.kind == "segment" else "watch_events"] += 1
        return out

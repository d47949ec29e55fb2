"""Events node: online selective decoding per embedding stream, plus the watch list.

Each camera's embeddings go through `perception.eval.online.OnlineSegmenter`. When it declares a boundary,
the segment before it is closed: its mean embedding (re-normalised) is classified against the label
vocabulary and published as an `Event(kind="segment")` on events/<cam>, and a `DecodeRequest` goes to
decode/<cam>. Watch phrases are scored against every embedding (cosine to the phrase's text embedding)
with hysteresis: reaching `enter` or falling to `leave` is an `Event(kind="watch")`.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

import numpy as np

from bus.codec import Envelope
from perception.eval.online import OnlineSegmenter, OnlineSegmenterConfig
from perception.messages import DecodeRequest, Embedding, Event, LabelScore
from perception.nodes.models import load_model
from perception.nodes.runtime import Node


def default_labels() -> list[str]:
    """ShapesWorld's canonical captions, one per (colour, shape, action) (change_colour without target)."""
    from perception.data.vocab import ACTION_LABELS, ALL_COMBOS

    return [f"the {c} {s} {ACTION_LABELS[a]}" for c, s, a in ALL_COMBOS]


@dataclass
class Stream:
    """One camera's segmenter and the embeddings since its current segment started (bounded)."""

    segmenter: OnlineSegmenter
    recent: collections.deque  # (step, Embedding) for steps not yet in a closed segment
    step: int = -1
    segment_id: int = 0
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
        self.seg_cfg = OnlineSegmenterConfig(threshold=ev.threshold, window=ev.window, confirm=ev.confirm,
                                             min_len=ev.min_len, max_len=ev.max_len)
        self.streams: dict[str, Stream] = {}

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.model.embed_text(texts).float().cpu().numpy()

    def _stream(self, cam: str) -> Stream:
        bound = (self.seg_cfg.max_len or 2000) + self.seg_cfg.window + self.seg_cfg.confirm + 1
        s = Stream(OnlineSegmenter(self.seg_cfg), collections.deque(maxlen=bound))
        self.streams[cam] = s
        return s

    async def process(self, env: Envelope) -> None:
        emb = env.msg
        if not isinstance(emb, Embedding):
            self.counters["ignored"] += 1
            return
        s = self.streams.get(emb.cam) or self._stream(emb.cam)
        t = emb.end_ns / 1e9
        if t <= s.last_t:  # the camera restarted: its old segment cannot continue
            self.counters["stream_resets"] += 1
            segment_id = s.segment_id
            s = self._stream(emb.cam)
            s.segment_id = segment_id
        s.last_t = t
        s.step += 1
        x = np.asarray(emb.embedding, dtype=np.float32)
        s.recent.append((s.step, emb))
        self.counters["embeddings"] += 1
        for boundary in s.segmenter.push(t, x):
            self._close_segment(s, emb, boundary.index)
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

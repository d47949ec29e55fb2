"""The pipeline's messages as Foxglove channels, with Foxglove's well-known schemas wherever one fits.

One mapping for both ways Foxglove sees a session: the live bridge (`perception foxglove`, a WebSocket
server) and the converted recording (`perception info IN --export foxglove OUT`, an MCAP file). Both log
into a `foxglove.Context`; the sink attached to the context (server or MCAP writer) does the rest, so the
stock panels (Image, Log, Plot, State Transitions, Raw Messages) show a session with no user schema.

| Foxglove topic | schema (encoding) | from | what |
|---|---|---|---|
| `/frames/<cam>` | `foxglove.CompressedImage` (protobuf), format `png` (small frames) or `jpeg` | frames/<cam> | the camera image; `timestamp` = capture time, `frame_id` = camera |
| `/captions/<cam>` | `foxglove.Log` (protobuf) | captions/<cam> | the caption text (`message`), `name` "decoder", `timestamp` = segment start (capture clock) |
| `/events/<cam>` | `foxglove.Log` (protobuf) | events/<cam> | "segment ..." (INFO) and watch crossings (WARNING on, INFO off), `name` "events" |
| `/truth/<cam>` | `foxglove.Log` (protobuf) | truth/<cam> | a synthetic camera's ground-truth segment, `name` "truth" |
| `/segments/<cam>` | `perception.Segment` (json) | events/<cam> | `{segment_id, start_s, end_s, label, score}` of each closed segment: plottable |
| `/watch_scores/<cam>` | `perception.WatchScores` (json) | embeddings/<cam> | `{window, stream_s, watches: [{id, phrase, score, enter, leave}]}`: each window's cosine to every watch phrase |
| `/stats/<node>` | `perception.Stats` (json) | stats/<node> | `{node, counters: {...}}`, dots in counter names replaced by `_` so Plot paths work |

Message log times: live, when the bridge received the message; exported, the recorder's log time. Topic
names keep the bus's (`captions/cam0` -> `/captions/cam0`), so `perception echo` and Foxglove agree.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from bus.message import Stats
from perception.messages import Caption, Embedding, Event, Frame, GroundTruthSegment
from perception.nodes.watches import Watch
from perception.viewers.feed import ViewSink

SEGMENT_SCHEMA = {
    "title": "perception.Segment",
    "type": "object",
    "properties": {
        "cam": {"type": "string"},
        "segment_id": {"type": "integer"},
        "start_s": {"type": "number"},
        "end_s": {"type": "number"},
        "label": {"type": "string"},
        "score": {"type": "number"},
    },
}
WATCH_SCORES_SCHEMA = {
    "title": "perception.WatchScores",
    "type": "object",
    "properties": {
        "cam": {"type": "string"},
        "window": {"type": "integer"},
        "stream_s": {"type": "number"},
        "watches": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "phrase": {"type": "string"},
                    "score": {"type": "number"},
                    "enter": {"type": "number"},
                    "leave": {"type": "number"},
                },
            },
        },
    },
}
STATS_SCHEMA = {
    "title": "perception.Stats",
    "type": "object",
    "properties": {
        "node": {"type": "string"},
        "counters": {"type": "object", "additionalProperties": {"type": "number"}},
    },
}
MAX_CHANNELS = 1024  # topics come from publishers' names: a flood of invented cameras stops here

# channel kind -> (Foxglove topic prefix, schema); "image" and "log" are the SDK's typed channels
KINDS: dict[str, tuple[str, Any]] = {
    "image": ("/frames/", "image"),
    "caption": ("/captions/", "log"),
    "event": ("/events/", "log"),
    "truth": ("/truth/", "log"),
    "segment": ("/segments/", SEGMENT_SCHEMA),
    "watch": ("/watch_scores/", WATCH_SCORES_SCHEMA),
    "stats": ("/stats/", STATS_SCHEMA),
}


def timestamp(ns: int):
    from foxglove.messages import Timestamp

    ns = max(0, int(ns))
    return Timestamp(sec=ns // 1_000_000_000, nsec=ns % 1_000_000_000)


def plottable(counters: dict[str, float]) -> dict[str, float]:
    """Counter names as Foxglove message paths can address them (`sub.superseded` -> `sub_superseded`)."""
    return {k.replace(".", "_").replace("/", "_"): float(v) for k, v in counters.items()}


class FoxgloveSink(ViewSink):
    """Logs into the channels of one `foxglove.Context` (made on first use, one per (kind, name))."""

    def __init__(self, context: Any, *, only_watched_frames: bool = False) -> None:
        """`only_watched_frames`: skip encoding a camera's frames while no sink is subscribed to its image
        channel (live: no client looks at it); an MCAP writer is always subscribed."""
        self.context = context
        self.only_watched_frames = only_watched_frames
        self._channels: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()  # frames are logged from a worker thread
        self.dropped_topics = 0

    def channel(self, kind: str, name: str) -> Any | None:
        key = (kind, name)
        ch = self._channels.get(key)
        if ch is not None:
            return ch
        with self._lock:
            ch = self._channels.get(key)
            if ch is None:
                if len(self._channels) >= MAX_CHANNELS:
                    self.dropped_topics += 1
                    return None
                ch = self._channels[key] = self._make(kind, name)
        return ch

    def _make(self, kind: str, name: str) -> Any:
        import foxglove
        from foxglove.channels import CompressedImageChannel, LogChannel

        prefix, schema = KINDS[kind]
        topic = prefix + name
        if schema == "image":
            return CompressedImageChannel(topic, context=self.context)
        if schema == "log":
            return LogChannel(topic, context=self.context)
        return foxglove.Channel(topic, schema=schema, context=self.context)

    @property
    def topics(self) -> list[str]:
        return sorted(KINDS[k][0] + n for k, n in self._channels)

    # -- ViewSink -----------------------------------------------------------------------------------------

    def wants_frames(self, cam: str) -> bool:
        ch = self.channel("image", cam)  # advertised from the first frame on, whether or not anyone looks
        return ch is not None and (not self.only_watched_frames or ch.has_sinks())

    def frame(self, frame: Frame, data: bytes, fmt: str, t_ns: int) -> None:
        from foxglove.messages import CompressedImage

        ch = self.channel("image", frame.cam)
        if ch is not None:
            msg = CompressedImage(timestamp=timestamp(frame.t_capture_ns), frame_id=frame.cam, data=data, format=fmt)
            ch.log(msg, log_time=t_ns)

    def _log(self, kind: str, cam: str, t_ns: int, stamp_ns: int, level: Any, text: str, name: str) -> None:
        from foxglove.messages import Log

        ch = self.channel(kind, cam)
        if ch is not None:
            ch.log(Log(timestamp=timestamp(stamp_ns), level=level, message=text, name=name), log_time=t_ns)

    def caption(self, caption: Caption, t_ns: int) -> None:
        from foxglove.messages import LogLevel

        self._log("caption", caption.cam, t_ns, caption.start_ns, LogLevel.Info, caption.text, "decoder")

    def event(self, event: Event, t_ns: int) -> None:
        from foxglove.messages import LogLevel

        if event.kind == "watch":
            level = LogLevel.Warning if event.active else LogLevel.Info
            text = f"watch {'on' if event.active else 'off'}: {event.watch} ({event.watch_id}) at {event.end_s:.2f} s"
            self._log("event", event.cam, t_ns, event.end_ns, level, text, "events")
            return
        top = event.labels[0] if event.labels else None
        label = f"{top.label} ({top.score:.2f})" if top else "?"
        text = f"segment {event.segment_id} {event.start_s:.2f}-{event.end_s:.2f} s: {label}"
        self._log("event", event.cam, t_ns, event.start_ns, LogLevel.Info, text, "events")
        ch = self.channel("segment", event.cam)
        if ch is not None:
            ch.log(
                {
                    "cam": event.cam,
                    "segment_id": event.segment_id,
                    "start_s": event.start_s,
                    "end_s": event.end_s,
                    "label": top.label if top else "",
                    "score": top.score if top else 0.0,
                },
                log_time=t_ns,
            )

    def truth(self, segment: GroundTruthSegment, t_ns: int) -> None:
        from foxglove.messages import LogLevel

        stamp = segment.t0_ns + int(segment.start_s * 1e9)
        text = f"truth {segment.start_s:.2f}-{segment.end_s:.2f} s: {segment.text}"
        self._log("truth", segment.cam, t_ns, stamp, LogLevel.Debug, text, "truth")

    def scores(
        self,
        emb: Embedding,
        watches: list[tuple[Watch, float]],
        labels: list[str],
        label_scores: np.ndarray | None,
        t_ns: int,
    ) -> None:
        if not watches:
            return
        ch = self.channel("watch", emb.cam)
        if ch is not None:
            items = [
                {"id": w.id, "phrase": w.phrase, "score": round(s, 5), "enter": w.enter, "leave": w.leave}
                for w, s in watches
            ]
            ch.log({"cam": emb.cam, "window": emb.window, "stream_s": emb.end_s, "watches": items}, log_time=t_ns)

    def stats(self, stats: Stats, t_ns: int) -> None:
        ch = self.channel("stats", stats.node)
        if ch is not None:
            ch.log({"node": stats.node, "counters": plottable(stats.counters)}, log_time=t_ns)

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

"""What a session perceived, read from an MCAP file: its windows' embeddings, segments, watch crossings and
captions, keyed by the frames they came from (capture times), so that two runs over the same frames -
the live one that recorded them and an offline `perception test`, or two offline runs - line up."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perception.messages import Caption, Embedding, Event
from perception.testing import recorded_inputs

OUTPUT_TOPICS = ["embeddings/", "events/", "captions/"]


@dataclass(frozen=True)
class Span:
    """A stretch of one camera's stream, by the capture times of its first and last frame."""

    cam: str
    start_ns: int
    end_ns: int


@dataclass
class Perceived:
    """A session's outputs. `t0_ns`: the capture time of its first window's first frame, per camera (the
    origin of the seconds that reports print); `live`: recorded from a running pipeline, so its latencies
    mean something; `run`: an offline run's own figures (from its file's metadata)."""

    path: Path
    embeddings: dict[Span, np.ndarray] = field(default_factory=dict)  # float32 [D]
    windows: dict[Span, int] = field(default_factory=dict)  # window numbers
    segments: list[Event] = field(default_factory=list)
    watches: list[Event] = field(default_factory=list)
    captions: list[Caption] = field(default_factory=list)
    embed_latency_ms: list[float] = field(default_factory=list)
    caption_latency_ms: list[float] = field(default_factory=list)
    t0_ns: dict[str, int] = field(default_factory=dict)
    config: str | None = None  # the stored config's JSON text, unchecked (perception.config.stored_config)
    run: dict[str, Any] | None = None

    @property
    def live(self) -> bool:
        return self.run is None

    def seconds(self, cam: str, ns: int) -> float:
        """Capture time `ns` as seconds since the camera's first window started."""
        return (ns - self.t0_ns.get(cam, ns)) / 1e9

    def latency(self) -> dict[str, float | None]:
        """p50/p99 of frame -> embedding and frame -> caption, ms (None when not recorded live)."""
        out: dict[str, float | None] = {}
        for name, values in (("embedding", self.embed_latency_ms), ("caption", self.caption_latency_ms)):
            arr = np.asarray(values, dtype=np.float64) if self.live and values else None
            out[f"{name}_p50_ms"] = None if arr is None else round(float(np.percentile(arr, 50)), 2)
            out[f"{name}_p99_ms"] = None if arr is None else round(float(np.percentile(arr, 99)), 2)
        return out


def read_perceived(path: str | Path) -> Perceived:
    """The outputs recorded in `path` (a `perception up --record` file, or a `perception test` output)."""
    from bus.codec import DecodeError
    from bus.mcapfile import RecordingError, load_metadata

    path = Path(path)
    meta = load_metadata(path).get("session", {})
    try:
        run = json.loads(meta["offline"]) if "offline" in meta else None
    except (ValueError, RecursionError):
        raise RecordingError(f"{path}: its session metadata `offline` is not valid JSON") from None
    if run is not None and not isinstance(run, dict):
        raise RecordingError(f"{path}: its session metadata `offline` is not a JSON object")
    # the stored config stays text: perception.config.stored_config parses and checks it (it is data)
    p = Perceived(path, config=meta.get("config"), run=run)
    try:
        inputs = recorded_inputs(path, OUTPUT_TOPICS)
    except DecodeError as exc:
        raise RecordingError(f"{path}: a recorded message does not decode ({exc.reason})") from None
    for _topic, msg in inputs:
        if isinstance(msg, Embedding):
            span = Span(msg.cam, msg.start_ns, msg.end_ns)
            p.embeddings[span] = np.asarray(msg.embedding, dtype=np.float32)
            p.windows[span] = msg.window
            p.t0_ns[msg.cam] = min(p.t0_ns.get(msg.cam, msg.start_ns), msg.start_ns)
            if msg.t_done_ns:
                p.embed_latency_ms.append((msg.t_done_ns - msg.t_capture_ns) / 1e6)
        elif isinstance(msg, Event):
            (p.segments if msg.kind == "segment" else p.watches).append(msg)
        elif isinstance(msg, Caption):
            p.captions.append(msg)
            p.caption_latency_ms.append(msg.latency_ms)
    return p

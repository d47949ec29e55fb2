"""The pipeline's messages as Rerun entities, on the stream's own timeline, and the default layout.

Every entity is logged on two timelines: `stream` (the camera's stream time, seconds: what the captions'
and segments' `start_s`/`end_s` count) and `capture` (wall-clock capture time, to line cameras up).

| entity | archetype | what |
|---|---|---|
| `<cam>/frame` | `EncodedImage` (PNG or JPEG) | the camera image at its stream time |
| `<cam>/captions` | `TextLog` | each caption, at its segment's start |
| `<cam>/events` | `TextLog` | closed segments (top label) and watch crossings (WARN on, INFO off) |
| `<cam>/timeline/segments` | `StateChange` | one lane: the online segments, "#n top label" (boundaries = state changes) |
| `<cam>/timeline/captions` | `StateChange` | the caption of each segment, from its start |
| `<cam>/timeline/truth` | `StateChange` | a synthetic camera's ground-truth segments |
| `<cam>/timeline/watch/<phrase>` | `StateChange` | "on" while a watch phrase is active (from the events node's crossings) |
| `<cam>/watch/<phrase>` | `Scalars` | each window's cosine to the watch phrase (`<phrase>`: `the_red_circle_grows`) |
| `<cam>/similarity` | `Tensor` [label, window] | the last `history` windows' cosine to each label text: a heat-map over time |
| `labels` | `TextDocument` (static) | row i of the heat-map -> its label text |
"""

from __future__ import annotations

import hashlib
import re
import threading
from typing import Any

import numpy as np

from bus.message import Stats
from perception.messages import Caption, Embedding, Event, Frame, GroundTruthSegment
from perception.nodes.watches import Watch
from perception.viewers import defaults
from perception.viewers.feed import ViewSink

DEFAULT_HISTORY = defaults.HISTORY
MAX_CAMERAS = 16  # camera names come from publishers: more than this are not drawn


def entity(cam: str, *parts: str) -> str:
    """`cam0/frame`: the camera's name escaped as Rerun wants it, then `parts`."""
    import rerun as rr

    return "/".join([rr.escape_entity_path_part(cam), *parts])


def blueprint(cameras: list[str]) -> Any:
    """Per camera: the image and the text log on the left; on the right the lanes (segments, captions, truth,
    watches), the watch scores and the label heat-map with its row names. The side panels start collapsed."""
    import rerun.blueprint as rrb

    log_columns = rrb.archetypes.TextLogColumns(
        timeline_columns=[rrb.encodings.TimelineColumn("stream")],
        text_log_columns=[rrb.encodings.TextLogColumn("LogLevel"), rrb.encodings.TextLogColumn("Body")],
    )
    columns = []
    for name in cameras:
        cam = entity(name)
        columns.append(
            rrb.Horizontal(
                rrb.Vertical(
                    rrb.Spatial2DView(origin=f"/{cam}/frame", name=f"{name} frame"),
                    rrb.TextLogView(
                        origin=f"/{cam}",
                        contents=[f"/{cam}/captions", f"/{cam}/events"],
                        name=f"{name} captions and events",
                        columns=log_columns,
                    ),
                    row_shares=[3, 2],
                ),
                rrb.Vertical(
                    rrb.StateTimelineView(origin=f"/{cam}/timeline", name=f"{name} segments, captions, truth, watches"),
                    rrb.TimeSeriesView(origin=f"/{cam}/watch", name=f"{name} watch scores (cosine)"),
                    rrb.Horizontal(
                        rrb.TensorView(
                            origin=f"/{cam}/similarity",
                            name=f"{name} label similarity (rows: labels, columns: windows, newest right)",
                            slice_selection=rrb.TensorSliceSelection(width=1, height=0),
                            scalar_mapping=rrb.TensorScalarMapping(colormap="Viridis"),
                            view_fit="Fill",
                        ),
                        rrb.TextDocumentView(origin="/labels", name="heat-map rows"),
                        column_shares=[4, 1],
                    ),
                    row_shares=[2, 2, 2],
                ),
                column_shares=[2, 3],
                name=name,
            )
        )
    root = columns[0] if len(columns) == 1 else rrb.Tabs(*columns)
    return rrb.Blueprint(
        root,
        rrb.BlueprintPanel(state="collapsed"),
        rrb.SelectionPanel(state="collapsed"),
        rrb.TimePanel(timeline="stream", state="collapsed"),
    )


def slug(text: str) -> str:
    """An entity-path part for a free text (a watch phrase): `the red circle grows` -> `the_red_circle_grows`;
    the text itself is the series' display name."""
    part = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:60] or "_"
    if part != text.replace(" ", "_"):  # something was dropped: keep distinct texts distinct
        part += "-" + hashlib.sha1(text.encode()).hexdigest()[:6]
    return part


class RerunSink(ViewSink):
    """Logs into one `rerun.RecordingStream`. Rerun keeps the time per thread, so every method sets the
    time it logs at itself: frames may come from a worker thread."""

    def __init__(self, rec: Any, *, history: int = DEFAULT_HISTORY, cameras: list[str] | None = None) -> None:
        self.rec = rec
        self.history = history
        self.cameras: list[str] = []
        self._heat: dict[str, np.ndarray] = {}  # cam -> [L, history]
        self._labels_logged: list[str] | None = None
        self._series: set[str] = set()
        self._segments: dict[str, int] = {}  # segments drawn per camera
        self._lock = threading.Lock()
        for cam in cameras or []:
            self._camera(cam)

    def _camera(self, cam: str) -> bool:
        """Whether `cam` is drawn; a new camera gets its place in the layout (from any thread)."""
        if cam in self.cameras:
            return True
        with self._lock:
            if cam not in self.cameras:
                if len(self.cameras) >= MAX_CAMERAS:
                    return False
                self.cameras.append(cam)
                self.rec.send_blueprint(blueprint(self.cameras), make_active=True, make_default=True)
        return True

    def _at(self, stream_s: float, capture_ns: int) -> None:
        self.rec.set_time("stream", duration=float(stream_s))
        if capture_ns > 0:
            self.rec.set_time("capture", timestamp=np.datetime64(int(capture_ns), "ns"))

    _path = staticmethod(entity)

    # -- ViewSink -----------------------------------------------------------------------------------------

    def frame(self, frame: Frame, data: bytes, fmt: str, t_ns: int) -> None:
        import rerun as rr

        if self._camera(frame.cam):
            self._at(frame.stream_s, frame.t_capture_ns)
            self.rec.log(self._path(frame.cam, "frame"), rr.EncodedImage(contents=data, media_type=f"image/{fmt}"))

    def caption(self, caption: Caption, t_ns: int) -> None:
        import rerun as rr

        if self._camera(caption.cam):
            self._at(caption.start_s, caption.start_ns)
            text = f"{caption.start_s:.2f}-{caption.end_s:.2f} s: {caption.text}"
            self.rec.log(self._path(caption.cam, "captions"), rr.TextLog(text, level="INFO"))
            self.rec.log(self._path(caption.cam, "timeline", "captions"), rr.StateChange(state=caption.text))

    def event(self, event: Event, t_ns: int) -> None:
        import rerun as rr

        if not self._camera(event.cam):
            return
        if event.kind == "watch":
            phrase = event.watch or event.watch_id or "?"
            self._at(event.end_s, event.end_ns)
            text = f"watch {'on' if event.active else 'off'}: {phrase} at {event.end_s:.2f} s"
            self.rec.log(self._path(event.cam, "events"), rr.TextLog(text, level="WARN" if event.active else "INFO"))
            lane = self._path(event.cam, "timeline", "watch", slug(phrase))
            self.rec.log(lane, rr.StateChange(state="on") if event.active else rr.StateChange.cleared())  # off: a gap
            return
        top = event.labels[0] if event.labels else None
        self._at(event.start_s, event.start_ns)
        label = top.label if top else "?"
        text = f"segment {event.segment_id} {event.start_s:.2f}-{event.end_s:.2f} s: {label}"
        if top:
            text += f" ({top.score:.2f})"
        self.rec.log(self._path(event.cam, "events"), rr.TextLog(text, level="DEBUG"))
        n = self._segments[event.cam] = self._segments.get(event.cam, 0) + 1
        # numbered, so two segments with the same label still show their boundary
        self.rec.log(self._path(event.cam, "timeline", "segments"), rr.StateChange(state=f"#{n} {label}"))

    def truth(self, segment: GroundTruthSegment, t_ns: int) -> None:
        import rerun as rr

        if self._camera(segment.cam):
            self._at(segment.start_s, segment.t0_ns + int(segment.start_s * 1e9))
            self.rec.log(self._path(segment.cam, "timeline", "truth"), rr.StateChange(state=segment.text))

    def scores(
        self,
        emb: Embedding,
        watches: list[tuple[Watch, float]],
        labels: list[str],
        label_scores: np.ndarray | None,
        t_ns: int,
    ) -> None:
        import rerun as rr

        if not self._camera(emb.cam):
            return
        self._at(emb.end_s, emb.end_ns)
        for w, score in watches:
            path = self._path(emb.cam, "watch", slug(w.phrase))
            if path not in self._series:
                self._series.add(path)
                self.rec.log(path, rr.SeriesLines(names=[w.phrase]), static=True)
            self.rec.log(path, rr.Scalars(score))
        if label_scores is None:
            return
        if self._labels_logged != labels:
            self._labels_logged = list(labels)
            rows = "\n".join(f"{i}. {text}" for i, text in enumerate(labels))
            self.rec.log("labels", rr.TextDocument(f"Heat-map rows (label texts):\n\n{rows}"), static=True)
        heat = self._heat.get(emb.cam)
        if heat is None or heat.shape[0] != len(label_scores):
            heat = self._heat[emb.cam] = np.full((len(label_scores), self.history), np.nan, dtype=np.float32)
        heat[:, :-1] = heat[:, 1:]
        heat[:, -1] = label_scores
        self.rec.log(
            self._path(emb.cam, "similarity"),
            rr.Tensor(np.nan_to_num(heat, nan=float(np.nanmin(heat))), dim_names=["label", "window"]),
        )

    def stats(self, stats: Stats, t_ns: int) -> None:
        """Not drawn: Rerun shows the session; the nodes' health is Foxglove's and `perception topics`'."""

    def close(self) -> None:
        self.rec.flush()

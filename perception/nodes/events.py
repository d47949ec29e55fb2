"""Events node: online selective decoding per embedding stream, plus the watch list.

The bookkeeping is `SegmentTracker` (perception/nodes/segments.py); this node feeds it and publishes what it
returns. The node holds no model: its label and watch phrase embeddings come from the encoder's `embed`
(perception/nodes/text_embeddings.py), once, in `setup`, which waits for the encoder up to
`supervisor.startup_timeout_s` and fails with the reason if it never answers.

Each camera's embeddings go through the online segmenter (perception/nodes/segmenter.py). When it
declares a boundary, the segment before it is closed: its mean embedding (re-normalised) is classified
against the label vocabulary and published as an `Event(kind="segment")` on events/<cam>, and a `DecodeRequest` goes to
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

from bus.component import Output, on
from bus.rpc import RpcClient
from perception.messages import DecodeRequest, Embedding, Event
from perception.nodes.encoder import encoder_endpoint
from perception.nodes.runtime import Node
from perception.nodes.segments import SegmentStream, SegmentTracker, StreamStart, Vocabulary
from perception.nodes.text_embeddings import fetch_text_embeddings


def default_labels() -> list[str]:
    """ShapesWorld's canonical captions, one per (colour, shape, action) (change_colour without target)."""
    from perception.data.vocab import ACTION_LABELS, ALL_COMBOS

    return [f"the {c} {s} {ACTION_LABELS[a]}" for c, s, a in ALL_COMBOS]


class EventsNode(Node):
    name = "events"
    outputs = {"events": Output("events/{cam}", Event), "decode": Output("decode/{cam}", DecodeRequest)}

    async def setup(self) -> None:
        ev = self.config.pipeline.events
        labels = ev.labels or default_labels()
        phrases = [w.label for w in ev.watch]
        client = RpcClient(self.config.bus, endpoint=encoder_endpoint(self.config))
        try:
            emb, model_id = await fetch_text_embeddings(
                client, [*labels, *phrases], wait_s=self.config.pipeline.supervisor.startup_timeout_s, log=self.log
            )
        except (TimeoutError, RuntimeError, ValueError) as exc:
            raise RuntimeError(f"events: no label embeddings: {exc}") from exc
        finally:
            client.close()
        self.vocab = Vocabulary(labels, emb[: len(labels)], ev.watch, emb[len(labels) :] if phrases else None)
        self.log.info(
            "label embeddings from the encoder",
            labels=len(labels),
            watch=len(phrases),
            dim=self.vocab.dim,
            model=model_id,
        )
        self.segments = SegmentTracker(
            ev,
            self.config.pipeline.encoder,
            self.config.pipeline.cameras,
            self.vocab,
            self.counters,
            on_start=self._stream_started,
            on_evict=self._evicted,
        )
        self.streams = self.segments.streams
        for key in ("embeddings", "segments", "watch_events"):
            self.counters[key] += 0

    @property
    def labels(self) -> list[str]:
        return list(self.vocab.labels)

    @property
    def dim(self) -> int:
        return self.vocab.dim

    def _stream_started(self, start: StreamStart) -> None:
        if start.cadence_from == "fallback":
            camera = self.segments.cameras.get(start.cam) or self.config.pipeline.cameras[0]
            self.log.warning(
                "no increasing stream times to measure the window cadence from; using a configured camera's",
                camera=start.cam,
                configured_camera=camera.name,
            )
        self.log.info(
            "segment lengths",
            camera=start.cam,
            cadence_s=round(start.cadence_s, 6),
            cadence_from=start.cadence_from,
            min_len_steps=start.min_len,
            max_len_steps=start.max_len,
        )

    def _evicted(self, cam: str, s: SegmentStream) -> None:
        """A stream fell out of the bound (more cameras than `max_cameras`): its open segment is lost."""
        suppressed = self._errors.should_log("streams_evicted")
        if suppressed is not None:
            self.log.warning(
                "too many cameras: dropped the least recently heard stream",
                camera=cam[:80],
                max_cameras=self.config.pipeline.events.max_cameras,
                suppressed=suppressed,
            )

    @on("embeddings/{cam}", Embedding)
    async def on_embedding(self, emb: Embedding) -> None:
        for msg in self.segments.push(emb):
            self.publish(msg)

    async def teardown(self) -> None:
        """Close every open segment, so that a stopping pipeline still captions what it saw last."""
        if hasattr(self, "segments"):
            for msg in self.segments.flush():
                self.publish(msg)


NODE = EventsNode

"""Events node: online selective decoding per embedding stream, plus the watch list.

The bookkeeping is `SegmentTracker` (perception/nodes/segments.py); this node feeds it and publishes what it
returns. The node holds no model: its label and watch phrase embeddings come from the encoder's `embed`
(perception/nodes/text_embeddings.py), once, in `setup`, which waits for the encoder up to
`supervisor.startup_timeout_s` and fails with the reason if it never answers.

Each camera's embeddings go through the online segmenter (perception/nodes/segmenter.py). When it
declares a boundary, the segment before it is closed: its mean embedding (re-normalised) is classified
against the label vocabulary and published as an `Event(kind="segment")` on events/<cam>, and a `DecodeRequest` goes to
decode/<cam>. Watch phrases are scored against every embedding (cosine to the phrase's text embedding)
with hysteresis: reaching `enter` or falling to `leave` is an `Event(kind="watch")` naming the watch
(`watch_id`: "config:<label>" for `events.watch`, "w-<hex>" for one added at run time).

Runtime watches belong to the world node (its `watch` / `unwatch` RPC, perception/nodes/watches.py), which
publishes the whole list as a `WatchList` on watches/all when it changes and about once a second. The node
asks the world for it once in `setup` (a world that is not up is no failure: the broadcast follows) and
takes every broadcast: phrases it has no embedding for are embedded by the encoder (a bounded cache keeps
them), then the new list is swapped in without a restart (perception/nodes/segments.py `set_watch`). That
runs beside the embedding handler, never in it; an encoder that is busy or away leaves the old list in
place until the next broadcast tries again (counted in `watch_embed_failures`, logged once a second).
Only the world's list is taken: with CURVE, the proxy lets only the keys of `bus.curve.topic_owners`
("watches/": the world's key) publish on watches/; on top of that, and alone on ipc://, a list whose
header `src` is not the world's is ignored and counted (`watch_lists_foreign`). The `src` is what the
publisher says, so without CURVE this check is advisory: it stops a confused publisher, not a hostile
process of the same user.

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
from collections.abc import Sequence

import numpy as np

from bus.component import Output, on
from bus.rpc import RpcClient
from perception.messages import DecodeRequest, Embedding, Event, WatchList
from perception.nodes.runtime import Node
from perception.nodes.segments import SegmentStream, SegmentTracker, StreamStart, Vocabulary
from perception.nodes.text_embeddings import fetch_text_embeddings
from perception.nodes.watches import Watch, runtime_watches
from perception.nodes.workers import encoder_endpoints
from perception.world_client import RpcError, WorldClient, WorldUnavailable

WATCHES_ASK_S = 1.0  # the world's `watches`, asked once at start
WORLD_SRC = "world"  # the world node's name on the bus: the `src` of the WatchList it publishes
WATCH_EMBED_S = 5.0  # an encoder that takes longer to embed new phrases is tried again on the next broadcast
MAX_CACHED_PHRASES = 1024  # phrase -> embedding of runtime watches, least recently used out


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
        client = RpcClient(self.config.bus, endpoint=encoder_endpoints(self.config))
        try:
            emb, model_id = await fetch_text_embeddings(
                client, [*labels, *phrases], wait_s=self.config.pipeline.supervisor.startup_timeout_s, log=self.log
            )
        except (TimeoutError, RuntimeError, ValueError) as exc:
            raise RuntimeError(f"events: no label embeddings: {exc}") from exc
        finally:
            client.close()
        self.vocab = Vocabulary(labels, emb[: len(labels)], ev.watch, emb[len(labels) :] if phrases else None)
        self.configured_watch: list[Watch] = [w for w in self.vocab.watch if isinstance(w, Watch)]
        self.configured_emb = emb[len(labels) :]
        self.runtime_watch: tuple[Watch, ...] = ()  # what is scored now, besides the configured ones
        self._phrase_emb: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        self._pending: list[Watch] | None = None  # the latest list received, not yet applied
        self._wake = asyncio.Event()
        self._applying = False
        wcfg = self.config.pipeline.world
        self._max_runtime = wcfg.max_watches * (wcfg.max_cameras + 1)  # the world's own bounds
        self.encoder = RpcClient(self.config.bus, endpoint=encoder_endpoints(self.config))
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
        for key in ("embeddings", "segments", "watch_events", "watch_lists", "watch_embed_failures"):
            self.counters[key] += 0
        await self._ask_world()

    def background(self) -> list:
        return [self._watch_updates()]

    def busy(self) -> bool:
        """A watch list received and not yet applied (its phrases may wait for the encoder)."""
        return self._pending is not None or self._wake.is_set() or self._applying

    def _close(self) -> None:
        if hasattr(self, "encoder"):
            self.encoder.close()

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

    # -- runtime watches ----------------------------------------------------------------------------------

    @on("watches/", WatchList)
    def on_watches(self, msg: WatchList) -> None:
        """The world's list: applied by `_watch_updates`, beside the embedding handler. A list from any
        other `src` is ignored and counted (`watch_lists_foreign`)."""
        src = self.current.src if self.current is not None else None
        if src != WORLD_SRC:
            self.counters["watch_lists_foreign"] += 1
            suppressed = self._errors.should_log("watch_lists_foreign")
            if suppressed is not None:
                self.log.warning(
                    "ignored a watch list that is not the world's", src=str(src)[:80], suppressed=suppressed
                )
            return
        self.counters["watch_lists"] += 1
        self._pending = self._runtime_of(msg.watches)
        self._wake.set()

    def _runtime_of(self, items: Sequence) -> list[Watch]:
        watches, rejected = runtime_watches(items, self._max_runtime)
        if rejected:
            self.counters["watch_items_rejected"] += rejected
            suppressed = self._errors.should_log("watch_items_rejected")
            if suppressed is not None:
                self.log.warning("ignored malformed or surplus runtime watches", count=rejected, suppressed=suppressed)
        return watches

    async def _ask_world(self) -> None:
        """The runtime watches as the world has them now; a world that is not up is no failure."""
        async with WorldClient(self.config.bus, timeout=WATCHES_ASK_S, retries=0) as world:
            try:
                items = await world.watches()
                if type(items) is not list:
                    raise TypeError("'watches' is not a list")
            except (WorldUnavailable, RpcError, KeyError, TypeError) as exc:
                self.log.info("no watch list from the world yet; waiting for its broadcast", error=str(exc)[:200])
                return
        await self._apply(self._runtime_of(items))

    async def _watch_updates(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, None
            if pending is None:
                continue
            self._applying = True
            try:
                await self._apply(pending)  # on failure, the next broadcast tries again
            except Exception as exc:  # a bug here must not stop the node: the next broadcast tries again
                self.report_error("watch_update", exc)
            finally:
                self._applying = False

    async def _apply(self, watches: list[Watch]) -> bool:
        """Score `watches` (and the configured ones) from now on; False if their phrases could not be
        embedded (the old list stays)."""
        if tuple(watches) == self.runtime_watch:
            return True
        known = {w.phrase: e for w, e in zip(self.vocab.watch, self.vocab.watch_emb if self.vocab.watch else [])}
        known.update(self._phrase_emb)
        missing = sorted({w.phrase for w in watches} - known.keys())
        if missing:
            try:
                emb, _ = await fetch_text_embeddings(
                    self.encoder, missing, wait_s=WATCH_EMBED_S, attempt_s=WATCH_EMBED_S
                )
                if emb.shape[1] != self.dim:
                    raise ValueError(f"the encoder embeds to D={emb.shape[1]}, the labels have D={self.dim}")
            except (TimeoutError, RuntimeError, ValueError) as exc:
                self.counters["watch_embed_failures"] += 1
                suppressed = self._errors.should_log("watch_embed")
                if suppressed is not None:
                    self.log.warning(
                        "could not embed new watch phrases; keeping the old list until the next broadcast",
                        phrases=len(missing),
                        error=str(exc)[:300],
                        suppressed=suppressed,
                    )
                return False
            known.update(zip(missing, emb))
        for phrase in {w.phrase for w in watches}:  # most recently used last
            self._phrase_emb[phrase] = known[phrase]
            self._phrase_emb.move_to_end(phrase)
        while len(self._phrase_emb) > MAX_CACHED_PHRASES:
            self._phrase_emb.popitem(last=False)
        rows = [known[w.phrase] for w in watches]
        emb_all = np.concatenate([self.configured_emb, np.asarray(rows, np.float32).reshape(len(rows), self.dim)])
        before = {w.id for w in self.runtime_watch}
        self.segments.set_watch([*self.configured_watch, *watches], emb_all.astype(np.float32))
        self.vocab = self.segments.vocab
        self.runtime_watch = tuple(watches)
        now = {w.id for w in watches}
        self.counters["watch_updates"] += 1
        self.counters["runtime_watches"] = len(watches)
        self.log.info("runtime watch list", watches=len(watches), added=len(now - before), removed=len(before - now))
        return True

    async def teardown(self) -> None:
        """Close every open segment, so that a stopping pipeline still captions what it saw last."""
        if hasattr(self, "segments"):
            for msg in self.segments.flush():
                self.publish(msg)


NODE = EventsNode

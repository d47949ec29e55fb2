"""World node: a bounded, time-indexed memory per camera, served to planners over request/reply.

It subscribes to events/, captions/ and embeddings/ and keeps, per camera, the last `max_items` events and
captions and the last `max_embeddings` window embeddings, nothing older than `horizon_s`, for at most
`max_cameras` cameras (least recently heard first out; the cameras in `pipeline.cameras` never). A record
that is not well formed (a segment embedding of the wrong dimension or not finite, a non-finite time) is
rejected and counted, never stored: one bad publisher must not break `search` for every camera.

With `world.persist` set, events and captions are appended to a JSON-lines file (see `PersistFile`) and
reloaded at start, so a restart keeps the memory. Every line carries a CRC-32 of itself; a line that is
not a well-formed record (torn, garbage, `null`, wrong types or dimension, bad checksum) is skipped and
counted, and the node starts with everything else. Late joiners get the current state here instead of
replaying the stream.

RPC methods on `bus.rpc` (results are JSON-friendly maps; malformed params -> RpcError "bad_request"):
    now      {camera?}                           current segment, latest caption, active watch labels
    history  {camera?, since_ns?, until_ns?, kinds?, limit?}   events and captions in a time range
    search   {text, camera?, k?}                 segments ranked by cosine(text S_Y, segment mean S^_Y)
    ask      {question, choices?, camera?}       forwarded to the encoder (re-runs the predictor only)
    watch    {phrase, camera?, enter?, leave?}   add a watch phrase at run time (or update its thresholds)
                                                 -> {id, phrase, camera, enter, leave, source: "runtime"}
    unwatch  {id}                                -> {id, removed}
    watches  {camera?}                           -> {watches: [...]}: configured and runtime, those that apply

`watch` and `unwatch` are limited per client (perception/nodes/rate_limit.py, `world.write_rate_per_s`):
beyond its rate a client gets RpcError "rate_limited" with when to retry, and others are not slowed.

With `world.store` (perception/memory/) every checked record, window embedding and pose/<cam> also goes to
a database, and `recall`, `last_seen`, `at`, `spans`, `segment`, `memory` answer from it
(perception/memory/queries.py): the node only hands over, the store does the rest.

The runtime watch list (perception/nodes/watches.py: checks, bounds `max_watches` per camera scope, its
file `<persist>.watches.json`) is published whole as a `WatchList` on watches/all whenever it changes and
every `WATCHES_EVERY_S`, so a (re)started events node has it within a second. The file is written off
the event loop, many changes in one write (perception/nodes/latest_writer.py). Unwatching a phrase that is
active clears it from `now`'s `active_watch` (the events node sends no more events for it).

The node holds no model: `search` has the encoder embed its text (`embed`, perception/nodes/text_embeddings.py),
and `ask` is the encoder's; without an encoder both fail with "encoder_unavailable". D, which every stored
embedding must have, comes from the model's config (perception/nodes/models.py `embed_dim`), so the persist
file is checked and restored before any encoder is up.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bus.bounded import BoundedDict
from bus.component import Input, Output, on
from bus.rpc import RpcError, RpcServer, RpcTimeout, current_client
from perception.memory.node import WorldMemory
from perception.messages import Caption, Embedding, Event, Pose, WatchList
from perception.nodes.latest_writer import LatestWriter
from perception.nodes.models import embed_dim
from perception.nodes.rate_limit import RateLimiter
from perception.nodes.runtime import Node
from perception.nodes.text_embeddings import embeddings_of
from perception.nodes.watches import (
    WatchLimit,
    WatchRegistry,
    check_camera,
    check_watch,
    decode_file,
    read_file,
    watch_file,
    write_file,
)
from perception.nodes.workers import EncoderRouter
from perception.nodes.world_store import (
    KINDS,
    PersistFile,
    caption_record,
    check_embedding,
    check_record,
    encode_line,
    event_record,
    is_int,
    is_number,
    read_lines,
)

MAX_TEXT_CHARS = 1000  # search text: the text model truncates long before this, but tokenising costs
MAX_K = 100
MAX_LIMIT = 10_000
MAX_ACTIVE_WATCH = 256  # watch labels tracked per camera (publishers choose them); configured ones stay
DROPPED_SHOWN = 10  # bad persist lines named in the start-up warning
WATCHES_EVERY_S = 1.0  # the watch list is published this often (or every bus.stats_interval_s if shorter)


@dataclass
class CameraMemory:
    items: collections.deque  # records (dicts) of events and captions, oldest first
    windows: collections.deque  # (end_ns, window, start_s, end_s) of recent embeddings
    # segment_id -> (its record, unit float32 [D]); the record tells a repeated id's entries apart, and
    # an entry leaves with its record, so this stays within max_items
    segment_embs: dict[int, tuple[dict, np.ndarray]]
    active_watch: BoundedDict  # label -> score when it rose
    latest_caption: dict | None = None


# -- RPC params --------------------------------------------------------------------------------------------


def _bad(message: str) -> RpcError:
    return RpcError("bad_request", message)


def _str_param(params: dict[str, Any], key: str) -> str | None:
    v = params.get(key)
    if v is not None and type(v) is not str:
        raise _bad(f"{key!r} must be a string")
    return v


def _time_param(params: dict[str, Any], key: str) -> float | int | None:
    v = params.get(key)
    if v is not None and not is_number(v):
        raise _bad(f"{key!r} must be a finite number (ns since the epoch)")
    return v


def _int_param(params: dict[str, Any], key: str, default: int, hi: int) -> int:
    v = params.get(key)
    if v is None:
        return default
    if not is_int(v, 1, hi + 1):
        raise _bad(f"{key!r} must be an integer in 1..{hi}")
    return v


def _kinds_param(params: dict[str, Any]) -> list[str] | None:
    v = params.get("kinds")
    if v is not None and not (type(v) is list and all(type(k) is str for k in v)):
        raise _bad(f"'kinds' must be a list of strings from {list(KINDS)}")
    return v


class WorldNode(Node):
    name = "world"
    outputs = {"watches": Output("watches/all", WatchList)}

    async def setup(self) -> None:
        self.wcfg = self.config.pipeline.world
        self.dim = embed_dim(self.config.model)
        configured = {c.name for c in self.config.pipeline.cameras}
        if len(configured) > self.wcfg.max_cameras:
            raise ValueError(
                f"world.max_cameras ({self.wcfg.max_cameras}) is below the number of configured "
                f"cameras ({len(configured)})"
            )
        self.memory: BoundedDict[str, CameraMemory] = BoundedDict(
            self.wcfg.max_cameras, protected=configured.__contains__, on_evict=self._evicted
        )
        self.watch_labels = {w.label for w in self.config.pipeline.events.watch}
        self.watches = WatchRegistry(
            self.config.pipeline.events.watch, self.wcfg.max_watches, self.wcfg.max_cameras + 1
        )
        self._watch_file: Path | None = None
        self._watch_writer: LatestWriter | None = None
        # watch/unwatch change state and the file: bounded per client, so a flood slows only its sender
        self.write_limit = RateLimiter(self.wcfg.write_rate_per_s, self.wcfg.write_burst, self.wcfg.max_rpc_clients)
        self._persist: PersistFile | None = None
        self._compact_after = 0  # after a failed compaction: lines to reach before trying again
        if self.wcfg.persist is not None:
            self._open_persist(Path(self.wcfg.persist))
            self._watch_file = watch_file(Path(self.wcfg.persist))
            self._restore_watches(self._watch_file)
            path = self._watch_file
            self._watch_writer = LatestWriter(lambda watches: write_file(path, watches), self._watch_write_failed)
        # asks go to the worker holding the camera, embeds to any (perception/nodes/workers.py)
        self.encoder = EncoderRouter(self.config, timeout=self.wcfg.ask_timeout_s, name=self.name)
        self.mem: WorldMemory | None = None
        if self.wcfg.store is not None:
            self.mem = WorldMemory(
                self.wcfg.store, self.dim, self.wcfg.robot, self.wcfg.memory, self.wcfg.max_cameras, self.log,
                self._embed_query,
            )  # fmt: skip
            self.mem.start()
        self.rpc = RpcServer(
            self.config.bus,
            {
                **(self.mem.rpc_handlers() if self.mem is not None else {}),
                "now": self._now,
                "history": self._history,
                "search": self._search,
                "ask": self._ask,
                "watch": self._watch,
                "unwatch": self._unwatch,
                "watches": self._watches,
            },
            name=self.name,
        )
        self.rpc.bind()

    def background(self) -> list:
        tasks = [self.rpc.run(), self._broadcast_watches(), *self.encoder.background()]
        if self._persist is not None and self.wcfg.fsync_interval_s > 0:
            tasks.append(self._sync_loop())
        if self._watch_writer is not None:
            tasks.append(self._watch_writer.run())
        return tasks

    async def teardown(self) -> None:
        """Also after a setup that failed part way (what exists is closed; the setup's error says why)."""
        if hasattr(self, "encoder"):
            self.encoder.close()
        if getattr(self, "_watch_writer", None) is not None:
            self._watch_writer.flush()  # the newest list reaches the file before the node stops
        if getattr(self, "_persist", None) is not None:
            self._persist.close()
        if getattr(self, "mem", None) is not None:
            self.mem.close()

    def inputs(self) -> list[Input]:
        """With a store, pose/<cam> too (not declared with @on: without a store nothing needs a pose)."""
        extra = [Input("pose/{cam}", Pose, "on_pose")] if self.config.pipeline.world.store is not None else []
        return [*super().inputs(), *extra]

    def _cam(self, name: str) -> CameraMemory:
        return self.memory.setdefault(
            name,
            lambda: CameraMemory(
                collections.deque(maxlen=self.wcfg.max_items),
                collections.deque(maxlen=self.wcfg.max_embeddings),
                {},
                BoundedDict(MAX_ACTIVE_WATCH, protected=self.watch_labels.__contains__),
            ),
        )

    def _evicted(self, name: str, mem: CameraMemory) -> None:
        """A camera fell out of the bound (more cameras heard than `max_cameras`): counted, logged."""
        self.counters["cameras_evicted"] += 1
        suppressed = self._errors.should_log("cameras_evicted")
        if suppressed is not None:
            self.log.warning(
                "too many cameras: forgot the least recently heard",
                camera=name[:80],
                items=len(mem.items),
                max_cameras=self.wcfg.max_cameras,
                suppressed=suppressed,
            )

    # -- memory -------------------------------------------------------------------------------------------

    def _remember(self, rec: dict[str, Any], emb: np.ndarray | None, persist: bool = True) -> None:
        """Store a checked record (and a segment's checked embedding); append it to the file if asked."""
        mem = self._cam(rec["camera"])
        if len(mem.items) == mem.items.maxlen:
            self._forget(mem, mem.items[0])
        mem.items.append(rec)
        if rec["kind"] == "segment" and emb is not None:
            mem.segment_embs[rec["segment_id"]] = (rec, emb)
        elif rec["kind"] == "caption":
            mem.latest_caption = rec
        elif rec["kind"] == "watch":
            if rec["active"]:
                mem.active_watch[rec["watch"]] = rec["labels"][0]["score"]
            else:
                mem.active_watch.pop(rec["watch"], None)
        horizon_ns = time.time_ns() - int(self.wcfg.horizon_s * 1e9)
        while mem.items and mem.items[0]["end_ns"] < horizon_ns:
            self._forget(mem, mem.items.popleft())
        if persist and self._persist is not None:
            self._append(rec, emb)

    @staticmethod
    def _forget(mem: CameraMemory, old: dict[str, Any]) -> None:
        """Drop the embedding of a record leaving memory (only its own: an id may repeat)."""
        if old["kind"] == "segment":
            entry = mem.segment_embs.get(old["segment_id"])
            if entry is not None and entry[0] is old:
                del mem.segment_embs[old["segment_id"]]

    @staticmethod
    def _embedding_of(mem: CameraMemory, rec: dict[str, Any]) -> np.ndarray | None:
        entry = mem.segment_embs.get(rec["segment_id"]) if rec["kind"] == "segment" else None
        return entry[1] if entry is not None and entry[0] is rec else None

    def _reject(self, msg: Any, exc: ValueError) -> None:
        self.counters[f"rejected.{type(msg).__name__}"] += 1
        suppressed = self._errors.should_log("rejected")
        if suppressed is not None:
            self.log.warning(
                "rejected a malformed message",
                type=type(msg).__name__,
                camera=str(msg.cam)[:80],
                error=str(exc)[:200],
                suppressed=suppressed,
            )

    @on("embeddings/{cam}", Embedding)
    def on_embedding(self, msg: Embedding) -> None:
        self._cam(msg.cam).windows.append((msg.end_ns, msg.window, msg.start_s, msg.end_s))
        self.counters["stored.Embedding"] += 1
        if self.mem is not None:
            try:
                self.mem.add_window(msg)
            except ValueError as exc:
                self._reject(msg, exc)

    def on_pose(self, msg: Pose) -> None:
        try:
            self.mem.add_pose(msg)  # type: ignore[union-attr]
        except ValueError as exc:
            self._reject(msg, exc)
            return
        self.counters["stored.Pose"] += 1

    @on("events/{cam}", Event)
    @on("captions/{cam}", Caption)
    def on_record(self, msg: Event | Caption) -> None:
        try:
            rec = check_record(event_record(msg) if isinstance(msg, Event) else caption_record(msg))
            emb = None
            if isinstance(msg, Event) and msg.kind == "segment" and msg.embedding is not None:
                emb = check_embedding(msg.embedding, self.dim)
        except ValueError as exc:
            self._reject(msg, exc)
            return
        self._remember(rec, emb)
        if self.mem is not None:
            self.mem.add_record(rec, emb)
        self.counters[f"stored.{type(msg).__name__}"] += 1

    # -- persistence --------------------------------------------------------------------------------------

    def _open_persist(self, path: Path) -> None:
        """Restore what a previous run persisted, then compact the file (or, failing that, append to it)."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._persist = PersistFile(path, self.wcfg.fsync_interval_s)
        lines = self._restore(path) if path.exists() else 0
        if not self._compact():
            self._persist.open_append(lines)

    def _restore(self, path: Path) -> int:
        """Load every valid line of `path` into memory; one warning sums up what was dropped. Returns the
        number of lines read."""
        if path.stat().st_mode & 0o077:
            self.log.warning("world memory file was readable by others; narrowing it to 0600", path=str(path))
        dropped, kept, shown, number = 0, 0, [], 0
        for line in read_lines(path, self.dim):
            number = line.number
            if line.record is None:
                dropped += 1
                if len(shown) < DROPPED_SHOWN:
                    shown.append(f"{line.number}: {line.error}")
            else:
                kept += 1
                self._remember(line.record, line.embedding, persist=False)
        self.counters["persist_bad_lines"] += dropped
        self.counters["restored"] = sum(len(m.items) for m in self.memory.values())
        if dropped:
            self.log.warning(
                "dropped bad lines from the world memory file", path=str(path), dropped=dropped, first=shown, kept=kept
            )
        self.log.info(
            "world memory restored", path=str(path), items=self.counters["restored"], cameras=len(self.memory)
        )
        return number

    def _records(self) -> Iterator[bytes]:
        for mem in self.memory.values():
            for rec in mem.items:
                yield encode_line(rec, self._embedding_of(mem, rec))

    def _compact(self) -> bool:
        """Rewrite the file from memory. A failure (disk full, read-only) is logged and counted; the node
        keeps appending and tries again after `compact_every` more lines."""
        assert self._persist is not None
        try:
            self._persist.rewrite(self._records())
        except OSError as exc:
            self.counters["persist_errors"] += 1
            self._compact_after = self._persist.lines + self.wcfg.compact_every
            self.log.error(
                "could not compact the world memory file",
                path=str(self._persist.path),
                error=f"{type(exc).__name__}: {exc}",
            )
            return False
        self.counters["compactions"] += 1
        return True

    def _append(self, rec: dict[str, Any], emb: np.ndarray | None) -> None:
        """Append one record; compact once the file holds `compact_every` lines more than twice what memory
        keeps, so it stays within 2x memory + `compact_every` lines however long the node runs."""
        assert self._persist is not None
        try:
            self._persist.append(encode_line(rec, emb))
        except OSError as exc:
            self.counters["persist_errors"] += 1
            suppressed = self._errors.should_log("persist_append")
            if suppressed is not None:
                self.log.error(
                    "could not append to the world memory file",
                    error=f"{type(exc).__name__}: {exc}",
                    suppressed=suppressed,
                )
            return
        live = sum(len(m.items) for m in self.memory.values())
        lines = self._persist.lines
        if lines >= 2 * live + self.wcfg.compact_every and lines >= self._compact_after:
            self._compact()

    async def _sync_loop(self) -> None:
        """Group fsync: what was appended reaches the disk within `fsync_interval_s` (see PersistFile)."""
        assert self._persist is not None
        while True:
            await asyncio.sleep(self.wcfg.fsync_interval_s)
            try:
                self._persist.sync()
            except OSError as exc:
                self.counters["persist_errors"] += 1
                if self._errors.should_log("persist_sync") is not None:
                    self.log.error("could not fsync the world memory file", error=str(exc))

    # -- runtime watches ----------------------------------------------------------------------------------

    def _restore_watches(self, path: Path) -> None:
        """The runtime watches a previous run kept; a file that cannot be read: a warning, an empty list."""
        try:
            data = read_file(path)  # bounded, no symlink followed
        except FileNotFoundError:
            return
        except OSError as exc:
            self.log.warning("could not read the runtime watch file; starting without", path=str(path), error=str(exc))
            return
        except ValueError as exc:  # too large, not a regular file
            self.counters["watch_file_bad"] += 1
            self.log.warning("the runtime watch file is not usable; starting without", path=str(path), error=str(exc))
            return
        try:
            kept, dropped = decode_file(data)
        except ValueError as exc:
            self.counters["watch_file_bad"] += 1
            self.log.warning("the runtime watch file is damaged; starting without", path=str(path), error=str(exc))
            return
        skipped = self.watches.restore(kept)
        if dropped or skipped:
            self.log.warning(
                "dropped runtime watches from their file",
                path=str(path),
                bad=dropped[:DROPPED_SHOWN],
                over_bounds=skipped,
            )
        self.counters["watches_restored"] = len(self.watches.runtime)
        self.log.info("runtime watches restored", path=str(path), watches=len(self.watches.runtime))

    def _watches_changed(self) -> None:
        """Publish the list at once; persist it (if asked) off the event loop, many changes in one write."""
        if self._watch_writer is not None:
            self._watch_writer.submit(tuple(self.watches.runtime.values()))
        self.publish(self.watches.message())

    def _watch_write_failed(self, exc: OSError) -> None:
        self.counters["persist_errors"] += 1
        self.log.error(
            "could not write the runtime watch file", path=str(self._watch_file), error=f"{type(exc).__name__}: {exc}"
        )

    def _limit_writes(self, method: str) -> None:
        """RpcError "rate_limited" once the calling client has spent its writes (see RateLimiter)."""
        wait = self.write_limit.take(current_client())
        if wait > 0:
            self.counters["rate_limited"] += 1
            raise RpcError(
                "rate_limited",
                f"{method}: rate-limited, this client made more than {self.wcfg.write_rate_per_s:g} watch/unwatch "
                f"calls a second (bursts of {self.wcfg.write_burst}, pipeline.world.write_rate_per_s); "
                f"retry in {wait:.3f} s",
            )

    def extra_stats(self) -> dict[str, float]:
        out = {"rpc_clients": float(self.write_limit.clients), "rpc_clients_evicted": float(self.write_limit.evicted)}
        if self._watch_writer is not None:
            out["watch_file_writes"] = float(self._watch_writer.written)
        if getattr(self, "mem", None) is not None:
            out.update(self.mem.stats())
        return out

    async def _broadcast_watches(self) -> None:
        every = min(WATCHES_EVERY_S, self.config.bus.stats_interval_s)
        while True:
            self.publish(self.watches.message())
            await asyncio.sleep(every)

    def _watch(self, params: dict[str, Any]) -> dict[str, Any]:
        self._limit_writes("watch")
        try:
            phrase, camera, enter, leave = check_watch(
                params.get("phrase"), params.get("camera"), params.get("enter"), params.get("leave")
            )
            watch, changed = self.watches.add(phrase, camera, enter, leave)
        except ValueError as exc:
            raise _bad(str(exc)) from None
        except WatchLimit as exc:
            raise RpcError("limit", str(exc)) from None
        if changed:
            self._watches_changed()
        return watch.as_dict()

    def _unwatch(self, params: dict[str, Any]) -> dict[str, Any]:
        self._limit_writes("unwatch")
        wid = params.get("id")
        if type(wid) is not str or not wid:
            raise _bad("unwatch needs 'id': a watch id from `watch` or `watches`")
        removed = self.watches.remove(wid)
        if removed is not None:
            self._clear_active(removed.phrase, removed.camera)
            self._watches_changed()
        return {"id": wid, "removed": removed is not None}

    def _clear_active(self, phrase: str, camera: str | None) -> None:
        """A removed watch sends no more events: its phrase is no longer active where no other watch of
        the same phrase applies."""
        for name, mem in self.memory.items():
            if camera is not None and name != camera:
                continue
            if not any(w.phrase == phrase for w in self.watches.applying_to(name)):
                mem.active_watch.pop(phrase, None)

    def _watches(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            camera = check_camera(params.get("camera"))
        except ValueError as exc:
            raise _bad(str(exc)) from None
        return {"watches": [w.as_dict() for w in self.watches.applying_to(camera)]}

    # -- queries ------------------------------------------------------------------------------------------

    def _cameras(self, params: dict[str, Any]) -> list[str]:
        cam = _str_param(params, "camera")
        if cam is None:
            return sorted(self.memory)
        if cam not in self.memory:
            raise RpcError("unknown_camera", f"no data for camera {cam[:80]!r}; known: {sorted(self.memory)}")
        return [cam]

    @staticmethod
    def _current_segment_id(mem: CameraMemory) -> int | None:
        """The open segment's id: one past the last closed segment's, or the id a later watch event
        carries if larger (an events node that restarted numbers from a new base); None if neither is known."""
        watch_id = None
        for rec in reversed(mem.items):
            if rec["kind"] == "segment":
                return max(rec["segment_id"] + 1, watch_id or 0)
            if rec["kind"] == "watch" and watch_id is None:
                watch_id = rec["segment_id"]
        return watch_id

    def _now(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name in self._cameras(params):
            mem = self.memory[name]
            last_closed = next((r for r in reversed(mem.items) if r["kind"] == "segment"), None)
            current = None
            if mem.windows:
                start = last_closed["end_s"] if last_closed else mem.windows[0][2]
                current = {
                    "segment_id": self._current_segment_id(mem),
                    "start_s": start,
                    "end_s": mem.windows[-1][3],
                    "windows_seen": mem.windows[-1][1] + 1,
                }
            out[name] = {
                "current_segment": current,
                "last_segment": last_closed,
                "latest_caption": mem.latest_caption,
                "active_watch": sorted(mem.active_watch),
            }
        return {"cameras": out, "t_ns": time.time_ns()}

    def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        since = _time_param(params, "since_ns")
        until = _time_param(params, "until_ns")
        kinds = _kinds_param(params)
        limit = _int_param(params, "limit", 1000, MAX_LIMIT)
        items = []
        for name in self._cameras(params):
            for rec in self.memory[name].items:
                if since is not None and rec["end_ns"] < since:
                    continue
                if until is not None and rec["start_ns"] > until:
                    continue
                if kinds and rec["kind"] not in kinds:
                    continue
                items.append(rec)
        items.sort(key=lambda r: r["end_ns"])
        return {"items": items[-limit:], "total": len(items)}

    async def _search(self, params: dict[str, Any]) -> dict[str, Any]:
        text = params.get("text")
        if type(text) is not str or not text.strip() or len(text) > MAX_TEXT_CHARS:
            raise _bad(f"search needs a non-empty 'text' string of at most {MAX_TEXT_CHARS} characters")
        k = _int_param(params, "k", 5, MAX_K)
        keys, bank, recs = [], [], {}
        for name in self._cameras(params):
            mem = self.memory[name]
            captions = {r["segment_id"]: r["text"] for r in mem.items if r["kind"] == "caption"}
            for rec in mem.items:
                emb = self._embedding_of(mem, rec)
                if emb is not None:
                    keys.append((name, rec["segment_id"]))
                    bank.append(emb)
                    recs[keys[-1]] = dict(rec, caption=captions.get(rec["segment_id"]))
        if not bank:
            return {"results": []}
        q = await self._embed_query(text)
        scores = np.stack(bank) @ q  # [M]
        order = np.argsort(-scores)[:k]
        return {"results": [dict(recs[keys[i]], score=round(float(scores[i]), 4)) for i in order]}

    async def _embed_query(self, text: str) -> np.ndarray:
        """The query's unit text embedding [D], from the encoder (which queues it with its asks)."""
        result = await self._encoder_call("embed", {"texts": [text]})
        try:
            emb, model_id = embeddings_of(result, 1)
        except ValueError as exc:
            raise RpcError("encoder_unavailable", f"the encoder's embed reply is unusable: {exc}") from None
        if emb.shape[1] != self.dim:
            raise RpcError(
                "model_mismatch",
                f"the encoder's model ({model_id}) embeds to D={emb.shape[1]}, the "
                f"stored segments have D={self.dim}: both must run the same model",
            )
        return emb[0]

    async def _ask(self, params: dict[str, Any]) -> Any:
        return await self._encoder_call("ask", params)

    async def _encoder_call(self, method: str, params: dict[str, Any]) -> Any:
        try:
            return await self.encoder.call(method, params)
        except RpcTimeout as exc:
            raise RpcError("encoder_unavailable", f"the encoder did not answer: {exc}") from exc


NODE = WorldNode

"""World node: a bounded, time-indexed memory per camera, served to planners over request/reply.

It subscribes to events/, captions/ and embeddings/ and keeps, per camera, the last `max_items` events and
captions and the last `max_embeddings` window embeddings, nothing older than `horizon_s`. With
`world.persist` set, events and captions are appended to a JSON-lines file and reloaded at start, so a
restart keeps the memory. Late joiners get the current state here instead of replaying the stream.

RPC methods on `bus.rpc` (results are JSON-friendly maps):
    now      {camera?}                           current segment, latest caption, active watch labels
    history  {camera?, since_ns?, until_ns?, kinds?, limit?}   events and captions in a time range
    search   {text, camera?, k?}                 segments ranked by cosine(text S_Y, segment mean S^_Y)
    ask      {question, choices?, camera?}       forwarded to the encoder (re-runs the predictor only)
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bus.codec import Envelope
from bus.rpc import RpcClient, RpcError, RpcServer, RpcTimeout
from perception.messages import Caption, Embedding, Event
from perception.nodes.encoder import encoder_endpoint
from perception.nodes.models import load_model
from perception.nodes.runtime import Node


@dataclass
class CameraMemory:
    items: collections.deque  # records (dicts) of events and captions, oldest first
    windows: collections.deque  # (end_ns, window, start_s, end_s) of recent embeddings
    segment_embs: dict = field(default_factory=dict)  # segment_id -> unit float32 [D]
    latest_caption: dict | None = None
    active_watch: dict = field(default_factory=dict)  # label -> score when it rose


def event_record(ev: Event) -> dict[str, Any]:
    rec = {"kind": ev.kind, "camera": ev.cam, "segment_id": ev.segment_id, "start_ns": ev.start_ns,
           "end_ns": ev.end_ns, "start_s": ev.start_s, "end_s": ev.end_s,
           "labels": [{"label": x.label, "score": x.score} for x in ev.labels]}
    if ev.kind == "watch":
        rec.update(watch=ev.watch, active=ev.active)
    return rec


def caption_record(c: Caption) -> dict[str, Any]:
    return {"kind": "caption", "camera": c.cam, "segment_id": c.segment_id, "text": c.text,
            "start_ns": c.start_ns, "end_ns": c.end_ns, "start_s": c.start_s, "end_s": c.end_s,
            "latency_ms": c.latency_ms}


class WorldNode(Node):
    name = "world"
    topics = ("events/", "captions/", "embeddings/")

    async def setup(self) -> None:
        self.wcfg = self.config.pipeline.world
        self.model, _ = await asyncio.to_thread(load_model, self.config.model, 1)
        self.memory: dict[str, CameraMemory] = {}
        self._persist_fh = None
        if self.wcfg.persist is not None:
            self._load(Path(self.wcfg.persist))
        self.encoder = RpcClient(self.config.bus, endpoint=encoder_endpoint(self.config),
                                 timeout=self.wcfg.ask_timeout_s, retries=0)
        self.rpc = RpcServer(self.config.bus, {"now": self._now, "history": self._history, "search": self._search,
                                               "ask": self._ask}, name=self.name)
        self.rpc.bind()

    def background(self) -> list:
        return [self.rpc.run()]

    async def teardown(self) -> None:
        self.encoder.close()
        if self._persist_fh is not None:
            self._persist_fh.close()

    def _cam(self, name: str) -> CameraMemory:
        mem = self.memory.get(name)
        if mem is None:
            mem = self.memory[name] = CameraMemory(collections.deque(maxlen=self.wcfg.max_items),
                                                   collections.deque(maxlen=self.wcfg.max_embeddings))
        return mem

    # -- memory -------------------------------------------------------------------------------------------

    def _remember(self, rec: dict[str, Any], emb: np.ndarray | None, persist: bool = True) -> None:
        mem = self._cam(rec["camera"])
        if len(mem.items) == mem.items.maxlen and mem.items[0]["kind"] == "segment":
            mem.segment_embs.pop(mem.items[0]["segment_id"], None)
        mem.items.append(rec)
        if rec["kind"] == "segment" and emb is not None:
            mem.segment_embs[rec["segment_id"]] = np.asarray(emb, dtype=np.float32)
        elif rec["kind"] == "caption":
            mem.latest_caption = rec
        elif rec["kind"] == "watch":
            if rec["active"]:
                mem.active_watch[rec["watch"]] = rec["labels"][0]["score"] if rec["labels"] else None
            else:
                mem.active_watch.pop(rec["watch"], None)
        horizon_ns = time.time_ns() - int(self.wcfg.horizon_s * 1e9)
        while mem.items and mem.items[0]["end_ns"] < horizon_ns:
            old = mem.items.popleft()
            if old["kind"] == "segment":
                mem.segment_embs.pop(old["segment_id"], None)
        if persist and self._persist_fh is not None:
            line = dict(rec, embedding=emb.tolist() if emb is not None else None)
            self._persist_fh.write(json.dumps(line) + "\n")
            self._persist_fh.flush()

    def _load(self, path: Path) -> None:
        """Reload what a previous run persisted (bad lines are skipped and counted), then compact the file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    emb = rec.pop("embedding", None)
                    if not isinstance(rec, dict) or rec.get("kind") not in ("segment", "watch", "caption"):
                        raise ValueError("not a world record")
                    self._remember(rec, np.asarray(emb, np.float32) if emb is not None else None, persist=False)
                except (ValueError, KeyError, TypeError) as exc:
                    self.counters["persist_bad_lines"] += 1
                    self.log.warning("skipped bad line in world memory file", path=str(path), error=str(exc))
            self.counters["restored"] = sum(len(m.items) for m in self.memory.values())
            self.log.info("world memory restored", path=str(path), items=self.counters["restored"])
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("w") as fh:
            for mem in self.memory.values():
                for rec in mem.items:
                    emb = mem.segment_embs.get(rec["segment_id"]) if rec["kind"] == "segment" else None
                    fh.write(json.dumps(dict(rec, embedding=emb.tolist() if emb is not None else None)) + "\n")
        tmp.replace(path)
        self._persist_fh = path.open("a")

    async def process(self, env: Envelope) -> None:
        msg = env.msg
        if isinstance(msg, Event):
            self._remember(event_record(msg), msg.embedding if msg.kind == "segment" else None)
        elif isinstance(msg, Caption):
            self._remember(caption_record(msg), None)
        elif isinstance(msg, Embedding):
            self._cam(msg.cam).windows.append((msg.end_ns, msg.window, msg.start_s, msg.end_s))
        else:
            self.counters["ignored"] += 1
            return
        self.counters[f"stored.{type(msg).__name__}"] += 1

    # -- queries ------------------------------------------------------------------------------------------

    def _cameras(self, params: dict[str, Any]) -> list[str]:
        cam = params.get("camera")
        if cam is None:
            return sorted(self.memory)
        if cam not in self.memory:
            raise RpcError("unknown_camera", f"no data for camera {cam!r}; known: {sorted(self.memory)}")
        return [cam]

    def _now(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name in self._cameras(params):
            mem = self.memory[name]
            segments = [r for r in mem.items if r["kind"] == "segment"]
            last_closed = segments[-1] if segments else None
            current = None
            if mem.windows:
                start = last_closed["end_s"] if last_closed else mem.windows[0][2]
                current = {"segment_id": (last_closed["segment_id"] + 1) if last_closed else 0,
                           "start_s": start, "end_s": mem.windows[-1][3], "windows_seen": mem.windows[-1][1] + 1}
            out[name] = {"current_segment": current, "last_segment": last_closed,
                         "latest_caption": mem.latest_caption, "active_watch": sorted(mem.active_watch)}
        return {"cameras": out, "t_ns": time.time_ns()}

    def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        since = params.get("since_ns")
        until = params.get("until_ns")
        kinds = params.get("kinds")
        limit = params.get("limit") or 1000
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
        return {"items": items[-int(limit):], "total": len(items)}

    def _search(self, params: dict[str, Any]) -> dict[str, Any]:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise RpcError("bad_request", "search needs a non-empty 'text' string")
        k = int(params.get("k") or 5)
        keys, bank, recs = [], [], {}
        for name in self._cameras(params):
            mem = self.memory[name]
            captions = {r["segment_id"]: r["text"] for r in mem.items if r["kind"] == "caption"}
            for rec in mem.items:
                if rec["kind"] == "segment" and rec["segment_id"] in mem.segment_embs:
                    keys.append((name, rec["segment_id"]))
                    bank.append(mem.segment_embs[rec["segment_id"]])
                    recs[keys[-1]] = dict(rec, caption=captions.get(rec["segment_id"]))
        if not bank:
            return {"results": []}
        q = self.model.embed_text([text])[0].float().cpu().numpy()  # [D]
        scores = np.stack(bank) @ q  # [M]
        order = np.argsort(-scores)[:k]
        return {"results": [dict(recs[keys[i]], score=round(float(scores[i]), 4)) for i in order]}

    async def _ask(self, params: dict[str, Any]) -> Any:
        try:
            return await self.encoder.call("ask", params)
        except RpcTimeout as exc:
            raise RpcError("encoder_unavailable", f"the encoder did not answer: {exc}") from exc


NODE = WorldNode

"""The memory's queries, one code path for the world node's RPC, `perception mcp` and `perception memory`.

    recall     {text?, since_ns?, until_ns?, near?: {x, y, r, frame_id?}, robot?, camera?, min_score?, limit?}
               segments matching every filter given: by score with text, else newest first
    last_seen  {text, min_score?, + the filters}   the newest segments whose score reaches min_score
    at         {t_ns?, near?, + robot/camera/text}  what was there / then (at least one of t_ns, near)
    spans      {watch?, since_ns?, until_ns?, robot?, camera?, limit?}  watch phrases' active spans, durations
    segment    {id}                                one stored segment (an answer's evidence `id`)
    memory     {}                                  what the store holds (rows, robots, cameras, bytes)

Every answer carries its evidence: id, robot, camera, times, caption, labels, poses, score, distance.
A place query also names the robots and cameras it could not see (`no_pose`: they had no pose). Bad
parameters raise QueryError("bad_request", one line); an unreachable store QueryError("store_unavailable").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from perception.memory.records import Near, Query
from perception.memory.store import MemoryStore, StoreError, StoreUnavailable

MAX_TEXT_CHARS = 1000
MAX_LIMIT = 100
MAX_NAME_CHARS = 256
DEFAULT_MIN_SCORE = 0.5  # "last seen": a match at least this close (the watch phrases' default `enter`)

Ns = int
Embed = Callable[[str], Awaitable[np.ndarray]]


class QueryError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NearParams(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    x: float = Field(allow_inf_nan=False)
    y: float = Field(allow_inf_nan=False)
    r: float = Field(gt=0, le=1e6, allow_inf_nan=False)  # metres
    frame_id: str | None = Field(None, min_length=1, max_length=MAX_NAME_CHARS)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT_CHARS)
    since_ns: int | None = Field(None, ge=-(2**63), lt=2**63)
    until_ns: int | None = Field(None, ge=-(2**63), lt=2**63)
    t_ns: int | None = Field(None, ge=-(2**63), lt=2**63)
    near: NearParams | None = None
    robot: str | None = Field(None, min_length=1, max_length=MAX_NAME_CHARS)
    camera: str | None = Field(None, min_length=1, max_length=MAX_NAME_CHARS)
    min_score: float | None = Field(None, ge=-1, le=1, allow_inf_nan=False)
    limit: int = Field(10, ge=1, le=MAX_LIMIT)
    watch: str | None = Field(None, min_length=1, max_length=MAX_TEXT_CHARS)
    id: int | None = Field(None, ge=0, lt=2**63)


def _parse(params: Any, allowed: set[str]) -> Params:
    if not isinstance(params, dict):
        raise QueryError("bad_request", "params must be a map")
    extra = sorted(set(params) - allowed)
    if extra:
        raise QueryError("bad_request", f"unknown parameter(s) {extra[:5]}; this query takes {sorted(allowed)}")
    try:
        return Params.model_validate(params)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(p) for p in e["loc"])
        raise QueryError("bad_request", f"{where}: {e['msg']}") from None


FILTERS = {"since_ns", "until_ns", "near", "robot", "camera", "limit"}


class MemoryQueries:
    """Queries over a store. `store` returns the open store or None (not reachable yet); `embed` turns a
    query text into its unit text embedding [D] (the encoder's `embed`, or a model loaded here)."""

    def __init__(self, store: Callable[[], MemoryStore | None], embed: Embed) -> None:
        self._store = store
        self._embed = embed

    def handlers(self) -> dict[str, Callable[[dict], Awaitable[dict]]]:
        return {
            "recall": self.recall,
            "last_seen": self.last_seen,
            "at": self.at,
            "spans": self.spans,
            "segment": self.segment,
            "memory": self.memory,
        }

    async def _call(self, fn: Callable, *args: Any) -> Any:
        store = self._store()
        if store is None:
            raise QueryError("store_unavailable", "the memory store has not been reached yet; try again")
        try:
            return await asyncio.to_thread(getattr(store, fn), *args)
        except StoreUnavailable as exc:
            raise QueryError("store_unavailable", str(exc)) from None
        except StoreError as exc:
            raise QueryError("store_error", str(exc)) from None

    async def _query(self, p: Params, order: str, min_score: float | None) -> Query:
        emb = None
        if p.text is not None:
            if not p.text.strip():
                raise QueryError("bad_request", "text must not be blank")
            emb = await self._embed(p.text)
        near = None if p.near is None else Near(p.near.x, p.near.y, p.near.r, p.near.frame_id)
        return Query(
            embedding=emb, text=p.text, since_ns=p.since_ns, until_ns=p.until_ns, near=near, robot=p.robot,
            camera=p.camera, min_score=min_score, order=order, limit=p.limit,  # type: ignore[arg-type]
        )  # fmt: skip

    async def _answer(self, q: Query) -> dict[str, Any]:
        hits = await self._call("search", q)
        out: dict[str, Any] = {"results": [h.as_dict() for h in hits]}
        if q.near is not None:
            out["no_pose"] = await self._call("no_pose", q)
        return out

    async def recall(self, params: dict) -> dict[str, Any]:
        p = _parse(params, FILTERS | {"text", "min_score"})
        return await self._answer(await self._query(p, "score", p.min_score))

    async def last_seen(self, params: dict) -> dict[str, Any]:
        p = _parse(params, FILTERS | {"text", "min_score"})
        if p.text is None:
            raise QueryError("bad_request", "last_seen needs 'text': what to look for")
        ms = DEFAULT_MIN_SCORE if p.min_score is None else p.min_score
        return await self._answer(await self._query(p, "recent", ms))

    async def at(self, params: dict) -> dict[str, Any]:
        p = _parse(params, FILTERS | {"text", "min_score", "t_ns"})
        if p.t_ns is None and p.near is None:
            raise QueryError("bad_request", "at needs 't_ns' (a time) or 'near' (a place), or both")
        if p.t_ns is not None:
            p.since_ns = p.until_ns = p.t_ns
        return await self._answer(await self._query(p, "recent" if p.text is None else "score", p.min_score))

    async def spans(self, params: dict) -> dict[str, Any]:
        p = _parse(params, {"watch", "since_ns", "until_ns", "robot", "camera", "limit"})
        q = Query(since_ns=p.since_ns, until_ns=p.until_ns, robot=p.robot, camera=p.camera, limit=p.limit)
        spans = await self._call("spans", q, p.watch)
        return {"spans": [s.as_dict() for s in spans]}

    async def segment(self, params: dict) -> dict[str, Any]:
        p = _parse(params, {"id"})
        if p.id is None:
            raise QueryError("bad_request", "segment needs 'id' (an answer's evidence id)")
        hit = await self._call("get", p.id)
        if hit is None:
            raise QueryError("not_found", f"no segment {p.id} in the memory store")
        return hit.as_dict()

    async def memory(self, params: dict) -> dict[str, Any]:
        _parse(params, set())
        return await self._call("stats")

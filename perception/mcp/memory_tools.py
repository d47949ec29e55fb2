"""MCP tools over the robot memory (perception/memory/queries.py): retrieve by text, time and place, combined.

Over a running pipeline they call the world node's RPC (its `world.store`); with `perception mcp --store URL`
they answer from the database alone, no pipeline running (a planner querying a fleet's memory), embedding
query texts with the configured model loaded here. Both paths run the same `MemoryQueries`.

Times are seconds as in the other tools (relative to now if < 1e9, else Unix epoch seconds); places are
metres in a fixed frame ("map"). Every result carries its evidence: segment id (`segment` opens it), robot,
camera, ISO time and how long ago, caption, top labels, pose at start and end, score, distance.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import mcp.types as types
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from perception.mcp.pipeline import PipelineError, epoch_ns, iso
from perception.mcp.version import package_version
from perception.memory.embed import LocalEmbedder
from perception.memory.queries import MemoryQueries, QueryError

MEMORY_TOOLS = {"recall", "last_seen", "what_was_at", "watch_durations", "segment", "memory"}
MemoryCall = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

STORE_INSTRUCTIONS = """\
The memory of one robot or a fleet: what its cameras perceived (segments with captions and labels), when,
and where the robot was (pose in a fixed frame, metres). Combine text, time, place, robot and camera in
`recall`; `last_seen` for where/when something was last seen; `what_was_at` for a time or a place;
`watch_durations` for how long a watched phrase stayed true. Times: seconds relative to now when below 1e9
(-3600 = an hour ago), else Unix epoch seconds. Each answer carries its evidence (segment id, robot,
camera, time, caption, pose, score). Start with `memory` to learn the robots, cameras and time span."""

Text = Annotated[str | None, Field(description="what to look for, in words", min_length=1, max_length=1000)]
Since = Annotated[float | None, Field(description="segments ending at/after: seconds (<1e9: relative to now)")]
Until = Annotated[float | None, Field(description="segments starting at/before: same convention as since_s")]
X = Annotated[float | None, Field(description="place: x in metres (with y and radius_m)")]
Y = Annotated[float | None, Field(description="place: y in metres")]
Radius = Annotated[float | None, Field(description="place: within this many metres of (x, y)", gt=0, le=1e6)]
Frame = Annotated[str | None, Field(description="the place's frame (e.g. map); omitted: any", max_length=256)]
Robot = Annotated[str | None, Field(description="one robot of the fleet; omitted: all", max_length=256)]
Camera = Annotated[str | None, Field(description="one camera; omitted: all", max_length=256)]
MinScore = Annotated[float | None, Field(description="cosine at or above which text matches", ge=-1, le=1)]
Limit = Annotated[int, Field(description="at most this many results", ge=1, le=100)]


def _result(obj: dict[str, Any]) -> types.CallToolResult:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content=obj)


def _place(p: dict[str, Any] | None) -> dict[str, Any] | None:
    if not p:
        return None
    return {"frame": p["frame_id"], "x": round(p["x"], 3), "y": round(p["y"], 3), "yaw": round(p["yaw"], 3)}


def view_hit(h: dict[str, Any], now_ns: int) -> dict[str, Any]:
    out = {
        "id": h["id"],
        "robot": h["robot"],
        "camera": h["camera"],
        "segment_id": h["segment_id"],
        "time": iso(h["end_ns"]),
        "ago_s": round((now_ns - h["end_ns"]) / 1e9, 1),
        "duration_s": round((h["end_ns"] - h["start_ns"]) / 1e9, 2),
        "caption": h.get("caption"),
        "labels": [{"label": x["label"], "score": round(x["score"], 3)} for x in h.get("labels", [])[:3]],
        "place_start": _place(h.get("pose_start")),
        "place_end": _place(h.get("pose_end")),
    }
    if h.get("score") is not None:
        out["score"] = h["score"]
    if h.get("distance_m") is not None:
        out["distance_m"] = h["distance_m"]
    return out


def _params(**kw: Any) -> dict[str, Any]:
    """Tool arguments -> query params (times to ns, x/y/radius to `near`); PipelineError if half a place."""
    now = time.time_ns()
    p: dict[str, Any] = {}
    for key in ("since_s", "until_s", "time_s"):
        if kw.get(key) is not None:
            p[key.replace("_s", "_ns").replace("time", "t")] = epoch_ns(kw[key], now)
    place = [kw.get("x"), kw.get("y"), kw.get("radius_m")]
    if any(v is not None for v in place):
        if any(v is None for v in place):
            raise PipelineError("bad_request", "a place needs all of x, y and radius_m")
        p["near"] = {"x": float(kw["x"]), "y": float(kw["y"]), "r": float(kw["radius_m"])}
        if kw.get("frame_id"):
            p["near"]["frame_id"] = kw["frame_id"]
    for key in ("text", "robot", "camera", "min_score", "limit", "watch", "id"):
        if kw.get(key) is not None:
            p[key] = kw[key]
    return p


def add_memory_tools(server: MCPServer, call: MemoryCall) -> None:
    read_only = types.ToolAnnotations(read_only_hint=True, open_world_hint=False)

    async def ask(method: str, **kw: Any) -> dict[str, Any]:
        try:
            return await call(method, _params(**kw))
        except PipelineError as exc:
            raise ToolError(exc.message) from None

    def hits(res: dict[str, Any], query: dict[str, Any]) -> types.CallToolResult:
        t = time.time_ns()
        out: dict[str, Any] = {"query": query, "results": [view_hit(h, t) for h in res.get("results", [])]}
        if res.get("no_pose"):
            out["no_pose"] = res["no_pose"]
            out["note"] = "these robots/cameras had no pose: a place query cannot see what they saw"
        return _result(out)

    @server.tool(annotations=read_only)
    async def recall(
        text: Text = None,
        since_s: Since = None,
        until_s: Until = None,
        x: X = None,
        y: Y = None,
        radius_m: Radius = None,
        frame_id: Frame = None,
        robot: Robot = None,
        camera: Camera = None,
        min_score: MinScore = None,
        limit: Limit = 10,
    ) -> types.CallToolResult:
        """Remembered segments matching every filter given: text (by meaning; best first), a time range,
        a place (within radius_m of x, y), a robot, a camera. Without text: newest first. E.g. "what did
        you see in the kitchen this morning": x, y, radius_m of the kitchen and since_s/until_s."""
        kw = dict(text=text, since_s=since_s, until_s=until_s, x=x, y=y, radius_m=radius_m, frame_id=frame_id,
                  robot=robot, camera=camera, min_score=min_score, limit=limit)  # fmt: skip
        return hits(await ask("recall", **kw), {k: v for k, v in kw.items() if v is not None})

    @server.tool(annotations=read_only)
    async def last_seen(
        text: Annotated[str, Field(description="what to look for, e.g. 'a red cup'", min_length=1, max_length=1000)],
        min_score: MinScore = None,
        since_s: Since = None,
        x: X = None,
        y: Y = None,
        radius_m: Radius = None,
        frame_id: Frame = None,
        robot: Robot = None,
        camera: Camera = None,
        limit: Limit = 1,
    ) -> types.CallToolResult:
        """Where and when `text` was last seen: the newest segments scoring at least min_score (default
        0.5), with the robot's place. "Where did you last see the red cup?"."""
        kw = dict(text=text, min_score=min_score, since_s=since_s, x=x, y=y, radius_m=radius_m, frame_id=frame_id,
                  robot=robot, camera=camera, limit=limit)  # fmt: skip
        return hits(await ask("last_seen", **kw), {k: v for k, v in kw.items() if v is not None})

    @server.tool(annotations=read_only)
    async def what_was_at(
        time_s: Annotated[float | None, Field(description="a moment: seconds (<1e9: relative to now)")] = None,
        x: X = None,
        y: Y = None,
        radius_m: Radius = None,
        frame_id: Frame = None,
        robot: Robot = None,
        camera: Camera = None,
        limit: Limit = 10,
    ) -> types.CallToolResult:
        """What was perceived at a moment (segments spanning it) and/or at a place; newest first."""
        kw = dict(time_s=time_s, x=x, y=y, radius_m=radius_m, frame_id=frame_id, robot=robot, camera=camera,
                  limit=limit)  # fmt: skip
        return hits(await ask("at", **kw), {k: v for k, v in kw.items() if v is not None})

    @server.tool(annotations=read_only)
    async def watch_durations(
        watch: Annotated[str | None, Field(description="the watch phrase; omitted: all", max_length=1000)] = None,
        since_s: Since = None,
        until_s: Until = None,
        robot: Robot = None,
        camera: Camera = None,
        limit: Limit = 20,
    ) -> types.CallToolResult:
        """How long watched phrases stayed true ("how long was the door open"): each active span with its
        start, end (null while still active), duration and where it began; newest first."""
        res = await ask("spans", watch=watch, since_s=since_s, until_s=until_s, robot=robot, camera=camera,
                        limit=limit)  # fmt: skip
        t = time.time_ns()
        spans = [
            {
                "robot": s["robot"], "camera": s["camera"], "watch": s["watch"], "start": iso(s["start_ns"]),
                "end": iso(s["end_ns"]) if s["end_ns"] is not None else None, "duration_s": s["duration_s"],
                "ago_s": round((t - s["start_ns"]) / 1e9, 1), "place": _place(s.get("pose")),
            }
            for s in res.get("spans", [])
        ]  # fmt: skip
        return _result({"spans": spans})

    @server.tool(annotations=read_only)
    async def segment(id: Annotated[int, Field(description="a result's id", ge=0)]) -> types.CallToolResult:
        """One remembered segment in full (the evidence behind an answer)."""
        return _result(view_hit(await ask("segment", id=id), time.time_ns()))

    @server.tool(annotations=read_only)
    async def memory() -> types.CallToolResult:
        """What the memory holds: rows per kind, robots and cameras with their segment counts, first and
        last time, bytes on disk."""
        res = await ask("memory")
        for key in ("first_ns", "last_ns"):
            if res.get(key) is not None:
                res[key.replace("_ns", "")] = iso(res[key])
        return _result(res)


class StoreBackend:
    """The queries straight on a store (`perception mcp --store`), query texts embedded here."""

    def __init__(self, store: Any, model_section: Any) -> None:
        self.store = store
        self.queries = MemoryQueries(lambda: store, LocalEmbedder(model_section, store.dim))

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.queries.handlers()[method](params)
        except QueryError as exc:
            raise PipelineError(exc.code, exc.message) from None


def build_store_server(backend: StoreBackend) -> MCPServer:
    server = MCPServer(
        "perception-memory", title="Robot memory", instructions=STORE_INSTRUCTIONS, version=package_version(),
        log_level="WARNING",
    )  # fmt: skip
    add_memory_tools(server, backend.call)
    return server

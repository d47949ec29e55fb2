"""The MCP side of `perception mcp`: tools, resources and notifications over a running pipeline.

Tools (each answer is compact JSON, as text and as structuredContent; a failure is a tool error, isError,
whose text says what to do): now, cameras, history, search, ask, watch, unwatch, watches; and the memory
tools over the world's store (perception/mcp/memory_tools.py): recall, last_seen, what_was_at,
watch_durations, segment, memory.

Resources (application/json):
    perception://captions/latest      the latest caption of every camera
    perception://captions/{camera}    the latest caption of one camera
    perception://events               the recent event log (closed segments and watch crossings)

Notifications, to clients of the initialize handshake (every desktop agent today):
- `notifications/resources/updated` for a URI the client subscribed to (`resources/subscribe`): a caption
  updates perception://captions/latest and perception://captions/<camera>; a segment or watch crossing
  updates perception://events.
- `notifications/message` (MCP logging, logger "perception.watch") for every watch crossing: level
  "notice" when a phrase becomes active, "info" when it falls back; `data` is the crossing as JSON.
  `logging/setLevel` filters them per client (default: "info", so both arrive).
Clients of the 2026-07-28 protocol get the same resource updates on `subscriptions/listen` streams.

Bounded: at most MAX_PEERS clients are tracked (least recently active out), MAX_SUBSCRIPTIONS URIs each,
and MAX_PENDING_URIS / MAX_PENDING_LOGS notifications wait to be sent; a client that does not take a
notification within SEND_TIMEOUT_S is dropped from the list (its requests still work).
"""

import asyncio
import collections
import hmac
import json
import socket
import time
from typing import Annotated, Any, Literal
from urllib.parse import quote

import anyio
import mcp.types as types
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from pydantic import Field

from bus.bounded import BoundedDict
from bus.logs import get_logger
from perception.mcp.memory_tools import add_memory_tools
from perception.mcp.pipeline import (
    BusFeed,
    Pipeline,
    PipelineError,
    epoch_ns,
    iso,
    view_ask,
    view_cameras,
    view_event,
    view_now,
    view_record,
    view_watch,
)
from perception.mcp.version import package_version
from perception.messages import Caption, Event

CAPTIONS_LATEST = "perception://captions/latest"
CAPTIONS_CAMERA = "perception://captions/{camera}"
EVENTS = "perception://events"
WATCH_LOGGER = "perception.watch"

MAX_PEERS = 64
MAX_SUBSCRIPTIONS = 32
MAX_URI_CHARS = 512
MAX_PENDING_URIS = 256
MAX_PENDING_LOGS = 64
SEND_TIMEOUT_S = 2.0
EVENTS_SHOWN = 50
LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

INSTRUCTIONS = """\
Perception of one or more live cameras by a VL-JEPA pipeline: what each camera shows now (captions and
labels of the current segment), what happened (a time-indexed log), search by meaning, questions about
the current view, and watch phrases that notify you when they start or stop matching.
Times: `stream_s` is [start, end] in seconds of the camera's stream; `time` is the wall clock (ISO 8601,
UTC) of the end; `ago_s` how long before the answer that was. Time arguments (`since_s`, `until_s`) are
seconds relative to now when below 1e9 (-60 = one minute ago, 0 = now) and Unix epoch seconds otherwise.
Scores are cosine similarities in [-1, 1]; higher is a better match. Start with `cameras` or `now`."""

CameraArg = Annotated[
    str | None,
    Field(description="camera name (from `cameras`); omitted: every camera", max_length=64),
]


def _result(obj: dict[str, Any]) -> types.CallToolResult:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content=obj)


def camera_uri(camera: str) -> str:
    return "perception://captions/" + quote(camera, safe="")


class Peer:
    """One connected client: its standalone channel (a ServerSession), subscriptions and log level."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.uris: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.level = "info"


def _connection_key(session: Any) -> int:
    """One key per client connection. Handlers get a ServerSession per request; the SDK (2.3) builds each
    around the connection's `Connection`, which it exposes to handlers only that way."""
    return id(getattr(session, "_connection", session))


class Notifier:
    """Turns bus messages into MCP notifications for the clients that asked for them, off the bus's path:
    the feed only marks what changed; one task sends, with a bounded wait per client."""

    def __init__(self, subscriptions: InMemorySubscriptionBus) -> None:
        self.subscriptions = subscriptions
        self.peers: BoundedDict[int, Peer] = BoundedDict(MAX_PEERS)
        self.dirty: dict[str, None] = {}  # URIs updated since the last send, in order
        self.logs: collections.deque[tuple[str, dict[str, Any]]] = collections.deque(maxlen=MAX_PENDING_LOGS)
        self.wake = asyncio.Event()
        self.counters: collections.Counter[str] = collections.Counter()
        self.log = get_logger("perception.mcp.notifier")

    # -- clients ----------------------------------------------------------------------------------------

    def peer(self, session: Any) -> Peer:
        key = _connection_key(session)
        peer = self.peers.get(key)
        if peer is None:
            peer = self.peers.setdefault(key, lambda: Peer(session))
            conn = getattr(session, "_connection", None)
            stack = getattr(conn, "exit_stack", None)
            if stack is not None:  # forget the client when its connection closes
                stack.callback(self.peers.pop, key, None)
        return peer

    def subscribe(self, session: Any, uri: str) -> None:
        if len(uri) > MAX_URI_CHARS:
            return
        uris = self.peer(session).uris
        uris[uri] = None
        uris.move_to_end(uri)
        while len(uris) > MAX_SUBSCRIPTIONS:
            uris.popitem(last=False)

    def unsubscribe(self, session: Any, uri: str) -> None:
        self.peer(session).uris.pop(uri, None)

    # -- what changed -----------------------------------------------------------------------------------

    def updated(self, uri: str) -> None:
        if uri not in self.dirty and len(self.dirty) >= MAX_PENDING_URIS:
            self.counters["dropped_updates"] += 1
            return
        self.dirty[uri] = None
        self.wake.set()

    def notice(self, level: str, data: dict[str, Any]) -> None:
        if len(self.logs) == self.logs.maxlen:
            self.counters["dropped_logs"] += 1
        self.logs.append((level, data))
        self.wake.set()

    def on_caption(self, msg: Caption) -> None:
        self.updated(CAPTIONS_LATEST)
        self.updated(camera_uri(msg.cam))

    def on_event(self, msg: Event) -> None:
        self.updated(EVENTS)
        if msg.kind == "watch":
            data = view_event(msg, time.time_ns())
            data["state"] = "entered" if msg.active else "left"
            self.notice("notice" if msg.active else "info", data)

    # -- sending ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            uris, self.dirty = list(self.dirty), {}
            logs = list(self.logs)
            self.logs.clear()
            for uri in uris:
                await self.subscriptions.publish(ResourceUpdated(uri=uri))  # 2026-07-28 listen streams
            for key, peer in self.peers.items():
                if not await self._send(peer, uris, logs):
                    self.peers.pop(key, None)
                    self.counters["peers_dropped"] += 1

    async def _send(self, peer: Peer, uris: list[str], logs: list[tuple[str, dict[str, Any]]]) -> bool:
        floor = LEVELS.index(peer.level)
        try:
            with anyio.fail_after(SEND_TIMEOUT_S):
                for uri in uris:
                    if uri in peer.uris:
                        await peer.session.send_resource_updated(uri)
                        self.counters["resource_updates"] += 1
                for level, data in logs:
                    if LEVELS.index(level) >= floor:
                        await peer.session.send_log_message(level=level, data=data, logger=WATCH_LOGGER)
                        self.counters["log_messages"] += 1
        except Exception as exc:  # closed, gone or too slow: it re-subscribes when it comes back
            self.log.info("dropped an MCP client from notifications", error=f"{type(exc).__name__}: {exc}"[:200])
            return False
        return True


def build_server(pipeline: Pipeline, feed: BusFeed) -> tuple[MCPServer, Notifier]:
    """The MCP server's tools and resources over `pipeline`; `feed` drives the notifications (its
    callbacks are set here). Run `feed.run()` and `notifier.run()` beside the transport."""
    subscriptions = InMemorySubscriptionBus()
    notifier = Notifier(subscriptions)
    feed.on_caption = notifier.on_caption
    feed.on_event = notifier.on_event
    server = MCPServer(
        "perception",
        title="VL-JEPA perception",
        instructions=INSTRUCTIONS,
        version=package_version(),
        log_level="WARNING",
        subscriptions=subscriptions,
    )
    read_only = types.ToolAnnotations(read_only_hint=True, open_world_hint=False)

    async def call(method: str, params: dict[str, Any] | None = None, *, model: bool = False) -> Any:
        try:
            return await pipeline.call(method, params, model=model)
        except PipelineError as exc:
            raise ToolError(exc.message) from None

    # -- tools ------------------------------------------------------------------------------------------

    @server.tool(annotations=read_only)
    async def now(camera: CameraArg = None) -> types.CallToolResult:
        """What each camera shows right now: the open segment (stream seconds so far), the last closed
        segment with its top labels and scores, the latest caption (text, segment times, how long ago)
        and the watch phrases active at the moment. Use it to answer "what is in front of you"."""
        return _result(view_now(await call("now", {"camera": camera}), time.time_ns()))

    @server.tool(annotations=read_only)
    async def cameras() -> types.CallToolResult:
        """The cameras the pipeline knows, each with its stream position, the time of its last event, its
        latest caption and active watches. Call it first to learn the camera names."""
        return _result(view_cameras(await call("now", {}), time.time_ns()))

    @server.tool(annotations=read_only)
    async def history(
        camera: CameraArg = None,
        since_s: Annotated[
            float | None,
            Field(
                description="start of the range: seconds relative to now if < 1e9 (-60 = one minute ago), "
                "else Unix epoch seconds; omitted: everything remembered"
            ),
        ] = None,
        until_s: Annotated[
            float | None,
            Field(description="end of the range, same convention as since_s; omitted: now"),
        ] = None,
        kinds: Annotated[
            list[Literal["segment", "caption", "watch"]] | None,
            Field(
                description="record kinds to keep: segment (closed segment with labels), caption (its "
                "decoded text), watch (a watch phrase became active or inactive); omitted: all",
                max_length=3,
            ),
        ] = None,
        limit: Annotated[int, Field(description="at most this many records, the most recent", ge=1, le=200)] = 20,
    ) -> types.CallToolResult:
        """What happened in a time range, oldest first: closed segments (top labels with scores), their
        captions and watch crossings, each with stream seconds, wall-clock time and how long ago. E.g.
        since_s=-60 for the last minute; kinds=["caption"] for a narrative. `total` counts every match."""
        t = time.time_ns()
        try:
            since, until = epoch_ns(since_s, t), epoch_ns(until_s, t)
        except PipelineError as exc:
            raise ToolError(exc.message) from None
        res = await call(
            "history", {"camera": camera, "since_ns": since, "until_ns": until, "kinds": kinds, "limit": limit}
        )
        items = [view_record(r, t) for r in res.get("items", [])]
        out = {"items": items, "returned": len(items), "total": res.get("total", len(items))}
        out["range"] = {"since": iso(since) if since else None, "until": iso(until or t)}
        return _result(out)

    @server.tool(annotations=read_only)
    async def search(
        text: Annotated[
            str,
            Field(
                description="what to look for, in words, e.g. 'a red cube moving left'", min_length=1, max_length=1000
            ),
        ],
        camera: CameraArg = None,
        k: Annotated[int, Field(description="how many segments to return", ge=1, le=20)] = 5,
    ) -> types.CallToolResult:
        """Past segments ranked by how well they match `text` (cosine between the text's embedding and
        the segment's mean predicted embedding), best first. Each has its score, stream seconds, time,
        top labels and caption: the evidence for "when did X happen"."""
        res = await call("search", {"text": text, "camera": camera, "k": k}, model=True)
        t = time.time_ns()
        return _result({"query": text, "results": [view_record(r, t) for r in res.get("results", [])]})

    @server.tool(annotations=read_only)
    async def ask(
        question: Annotated[
            str,
            Field(
                description="a question about the current view, e.g. 'what colour is the circle?'",
                min_length=1,
                max_length=500,
            ),
        ],
        choices: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=200)]] | None,
            Field(
                description="candidate answers; the answer is the best-scoring one (recommended: the "
                "model answers far better choosing than writing)",
                max_length=64,
            ),
        ] = None,
        camera: CameraArg = None,
    ) -> types.CallToolResult:
        """Ask about what the camera shows now (its latest window, about the last 2 s). With `choices`,
        returns the best choice and every choice's score; without, a short generated text. The evidence
        is the window that was looked at (stream seconds, time)."""
        res = await call("ask", {"question": question, "choices": choices, "camera": camera}, model=True)
        return _result(view_ask(res, time.time_ns()))

    @server.tool(annotations=types.ToolAnnotations(read_only_hint=False, idempotent_hint=True))
    async def watch(
        phrase: Annotated[
            str, Field(description="what to watch for, in words, e.g. 'a person enters'", min_length=1, max_length=200)
        ],
        camera: CameraArg = None,
        enter: Annotated[
            float | None,
            Field(description="cosine at or above which the phrase becomes active (default 0.5)", ge=-1, le=1),
        ] = None,
        leave: Annotated[
            float | None,
            Field(
                description="cosine at or below which it becomes inactive again, <= enter (default 0.4)", ge=-1, le=1
            ),
        ] = None,
    ) -> types.CallToolResult:
        """Start watching for a phrase on every window of a camera (or of all cameras). Each crossing is
        pushed to you as a log notification (logger "perception.watch", level notice when it becomes
        active, info when it stops) and appears in `history` with kind "watch". Returns the watch with
        its id (for `unwatch`); watching the same phrase and camera again updates its thresholds."""
        res = await call("watch", {"phrase": phrase, "camera": camera, "enter": enter, "leave": leave})
        return _result(view_watch(res))

    @server.tool(annotations=types.ToolAnnotations(read_only_hint=False, idempotent_hint=True))
    async def unwatch(
        id: Annotated[
            str,
            Field(description="the watch id returned by `watch` or listed by `watches`", min_length=1, max_length=64),
        ],
    ) -> types.CallToolResult:
        """Stop a watch started with `watch`. `removed` is false if no such watch existed."""
        res = await call("unwatch", {"id": id})
        return _result({"id": res.get("id", id), "removed": bool(res.get("removed"))})

    async def memory_call(method: str, params: dict[str, Any]) -> Any:  # the world's store (world.store)
        return await pipeline.call(method, params, model="text" in params)

    add_memory_tools(server, memory_call)

    @server.tool(annotations=read_only)
    async def watches(camera: CameraArg = None) -> types.CallToolResult:
        """Every watch phrase: the configured ones (source "config") and those added with `watch`
        (source "runtime"), with id, camera (null: all) and thresholds."""
        res = await call("watches", {"camera": camera})
        return _result({"watches": [view_watch(w) for w in res.get("watches", [])]})

    # -- resources --------------------------------------------------------------------------------------

    async def latest_captions(camera: str | None) -> dict[str, Any]:
        t = time.time_ns()
        try:
            res = await pipeline.call("now", {"camera": camera})
        except PipelineError as exc:
            cached = {c: m for c, m in feed.latest.items() if camera in (None, c)}
            if exc.code == "unknown_camera":
                raise ResourceNotFoundError(exc.message) from None
            if exc.code != "no_pipeline" or not cached:
                raise ResourceError(exc.message) from None
            caps = {c: view_event(m, t) for c, m in cached.items()}  # what this server heard on the bus
            return {"time": iso(t), "cameras": caps, "source": "bus (the world node does not answer)"}
        caps = {c: view_record(v.get("latest_caption"), t) for c, v in (res.get("cameras") or {}).items()}
        return {"time": iso(t), "cameras": caps, "source": "world"}

    @server.resource(CAPTIONS_LATEST, name="latest captions", mime_type="application/json")
    async def captions_latest() -> str:
        """The latest caption of every camera (text, segment id, stream seconds, time). Subscribe to be
        notified (resources/updated) whenever a new caption arrives."""
        return json.dumps(await latest_captions(None), separators=(",", ":"))

    @server.resource(CAPTIONS_CAMERA, name="latest caption of a camera", mime_type="application/json")
    async def captions_camera(camera: str) -> str:
        """The latest caption of one camera. Subscribe to be notified when it changes."""
        return json.dumps(await latest_captions(camera), separators=(",", ":"))

    @server.resource(EVENTS, name="event log", mime_type="application/json")
    async def events() -> str:
        """The most recent events, oldest first: closed segments (top labels) and watch crossings.
        Subscribe to be notified when one is added."""
        t = time.time_ns()
        try:
            res = await pipeline.call("history", {"kinds": ["segment", "watch"], "limit": EVENTS_SHOWN})
            items, source = [view_record(r, t) for r in res.get("items", [])], "world"
        except PipelineError as exc:
            if exc.code != "no_pipeline" or not feed.events:
                raise ResourceError(exc.message) from None
            items = [view_event(m, t) for m in list(feed.events)[-EVENTS_SHOWN:]]
            source = "bus (the world node does not answer)"
        return json.dumps({"time": iso(t), "events": items, "source": source}, separators=(",", ":"))

    # -- subscriptions and log level (handshake-era clients) ------------------------------------------

    lowlevel = server._lowlevel_server  # the SDK's own Server; MCPServer offers no decorator for these

    async def on_subscribe(ctx: ServerRequestContext, params: types.SubscribeRequestParams) -> types.EmptyResult:
        notifier.subscribe(ctx.session, str(params.uri))
        return types.EmptyResult()

    async def on_unsubscribe(ctx: ServerRequestContext, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        notifier.unsubscribe(ctx.session, str(params.uri))
        return types.EmptyResult()

    async def on_set_level(ctx: ServerRequestContext, params: types.SetLevelRequestParams) -> types.EmptyResult:
        notifier.peer(ctx.session).level = params.level
        return types.EmptyResult()

    async def on_initialized(ctx: ServerRequestContext, params: types.NotificationParams) -> None:
        notifier.peer(ctx.session)  # every client gets watch crossings as log messages

    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, on_subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, on_unsubscribe)
    lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, on_set_level)
    lowlevel.add_notification_handler("notifications/initialized", types.NotificationParams, on_initialized)
    return server, notifier


# -- transports ---------------------------------------------------------------------------------------


class BearerAuth:
    """ASGI wrapper: every HTTP request must carry `Authorization: Bearer <token>` (compared in constant
    time); anything else is answered 401 before it reaches MCP."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            got = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
            if not hmac.compare_digest(got, self.expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b'Bearer realm="perception"'),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b'{"error":"missing or wrong bearer token"}'})
                return
        await self.app(scope, receive, send)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/mcp"


async def serve_http(server: MCPServer, sock: socket.socket, token: str | None) -> None:
    import uvicorn

    host = sock.getsockname()[0]
    # the SDK turns DNS-rebinding protection on for a loopback host (Host/Origin must be loopback too)
    app: Any = server.streamable_http_app(host=host)
    if token is not None:
        app = BearerAuth(app, token)
    http = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    print(f"mcp {url_of(sock)}", flush=True)
    await http.serve(sockets=[sock])


async def serve_store(config: Any, store: Any, sock: socket.socket | None, token: str | None) -> None:
    """`perception mcp --store URL`: the memory tools on the database alone, no pipeline."""
    from perception.mcp.memory_tools import StoreBackend, build_store_server

    server = build_store_server(StoreBackend(store, config.model))
    try:
        if sock is None:
            await server.run_stdio_async()
        else:
            await serve_http(server, sock, token)
    finally:
        store.close()


async def serve(
    config: Any, timeout: float, model_timeout: float, sock: socket.socket | None, token: str | None
) -> None:
    """Serve MCP on stdio (sock None) or streamable HTTP on the listening `sock`, until the client closes
    stdin or the HTTP server is stopped."""
    pipeline = Pipeline(config.bus, timeout=timeout, model_timeout=model_timeout)
    feed = BusFeed(config.bus)
    server, notifier = build_server(pipeline, feed)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed.run)
            tg.start_soon(notifier.run)
            if sock is None:
                await server.run_stdio_async()
            else:
                await serve_http(server, sock, token)
            tg.cancel_scope.cancel()
    finally:
        pipeline.close()

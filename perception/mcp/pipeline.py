"""The bus side of `perception mcp`: world RPC calls that never hang, a feed of captions and events, and
compact views of the world's records.

`Pipeline.call(method, params)` goes to the world node through perception's one `WorldClient`
(perception/world_client.py) with a bounded timeout and raises `PipelineError` (code + a message an
agent can act on) for everything that can go wrong: no pipeline, an unknown camera, a bad request, a
busy or missing model, an RPC method the running world does not have.
Model calls (`ask`, `search`) get a longer budget; so that they too fail fast when nothing runs, they
are preceded by a cheap `now` whenever nothing answered in the last `PROBE_FRESH_S`.

`BusFeed` subscribes to captions/ and events/ (retrying until a proxy answers: the server starts, and
stays up, without a pipeline) and keeps a bounded cache: the latest caption per camera (at most
`MAX_CAMERAS` cameras, least recently heard out) and the last `MAX_EVENTS` events. Each message is handed
to `on_caption` / `on_event` for notifications.

The views keep what an agent needs to cite its evidence, and nothing else (no embeddings): stream seconds
(`stream_s`: [start, end] in the camera's stream), the wall-clock time of the end (`time`, ISO 8601 UTC,
and `ago_s`, seconds before the answer), captions, labels and scores rounded to 3 decimals.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import zmq

from bus.bounded import BoundedDict
from bus.config import BusConfig, where_looked
from bus.logs import RateLimited, get_logger
from bus.pubsub import BusNotReady, Subscriber
from perception.messages import Caption, Event
from perception.world_client import RpcError, WorldClient, WorldUnavailable

PROBE_FRESH_S = 5.0  # a model call skips the liveness probe when the world answered this recently
MAX_CAMERAS = 64  # cameras whose latest caption the feed keeps (names come from publishers)
MAX_EVENTS = 100  # events kept by the feed (the world keeps far more: `history`)
TOP_LABELS = 3
TOP_SCORES = 10
EPOCH_S = 1e9  # a time at or above this is absolute (Unix seconds, after 2001-09-09); below, relative to now


class PipelineError(Exception):
    """A world call that failed, with a code (`no_pipeline`, `timeout`, `unknown_camera`, `bad_request`,
    `not_ready`, `busy`, `encoder_unavailable`, `unsupported`, or the world's own) and a message saying what
    to do about it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- times and views ------------------------------------------------------------------------------------


# 9999-12-31T23:59:59Z, the last second an ISO time can show: a time argument beyond it (1e300) is refused
# with its reason instead of overflowing in the conversion ("Error executing tool history" and no more)
MAX_TIME_S = 253_402_300_799.0


def epoch_ns(t_s: float | None, now_ns: int) -> int | None:
    """A tool's time argument as ns since the epoch: >= EPOCH_S is absolute Unix seconds, anything smaller
    is seconds relative to now (-60: a minute ago; 0: now). A range before 1970 starts at 1970."""
    if t_s is None:
        return None
    if not math.isfinite(t_s) or abs(t_s) > MAX_TIME_S:
        raise PipelineError(
            "bad_request",
            f"time {t_s!r} is not a number of seconds within +-{MAX_TIME_S:.0f} (Unix seconds, or seconds "
            "relative to now: -60 is a minute ago)",
        )
    ns = int(t_s * 1e9) if t_s >= EPOCH_S else now_ns + int(t_s * 1e9)
    return min(max(ns, 0), int(MAX_TIME_S * 1e9))


def iso(t_ns: int) -> str:
    return datetime.fromtimestamp(t_ns / 1e9, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _r(x: Any, nd: int = 3) -> Any:
    return round(x, nd) if isinstance(x, float) else x


def when(rec: dict[str, Any], now_ns: int) -> dict[str, Any]:
    """Where and when a record happened: stream seconds [start, end], end as ISO time and seconds ago."""
    out: dict[str, Any] = {}
    if "start_s" in rec and "end_s" in rec:
        out["stream_s"] = [_r(rec["start_s"], 2), _r(rec["end_s"], 2)]
    end_ns = rec.get("end_ns")
    if isinstance(end_ns, int) and end_ns > 0:
        out["time"] = iso(end_ns)
        out["ago_s"] = round((now_ns - end_ns) / 1e9, 1)
    return out


def view_labels(labels: Iterable[dict[str, Any]] | None, n: int = TOP_LABELS) -> list[dict[str, Any]]:
    return [{"label": x.get("label"), "score": _r(x.get("score"))} for x in list(labels or [])[:n]]


def view_record(rec: dict[str, Any] | None, now_ns: int) -> dict[str, Any] | None:
    """A world record (segment, caption or watch crossing) as evidence: no embedding, rounded numbers."""
    if not rec:
        return None
    kind = rec.get("kind")
    out: dict[str, Any] = {"kind": kind, "camera": rec.get("camera"), "segment_id": rec.get("segment_id")}
    out.update(when(rec, now_ns))
    if kind == "caption":
        out["caption"] = rec.get("text")
    elif kind == "watch":
        labels = rec.get("labels") or [{}]
        out.update(
            watch_id=rec.get("watch_id"),
            phrase=rec.get("watch"),
            active=rec.get("active"),
            score=_r(labels[0].get("score")),
        )
    else:
        out["labels"] = view_labels(rec.get("labels"))
        if rec.get("caption") is not None:
            out["caption"] = rec["caption"]
    if "score" in rec and kind != "watch":
        out["score"] = _r(rec["score"])
    return out


def view_now(result: dict[str, Any], now_ns: int) -> dict[str, Any]:
    cameras = {}
    for name, cam in (result.get("cameras") or {}).items():
        cur = cam.get("current_segment")
        cameras[name] = {
            "stream_s": _r(cur["end_s"], 2) if cur else None,
            "current_segment": (
                {
                    "segment_id": cur.get("segment_id"),
                    "stream_s": [_r(cur.get("start_s"), 2), _r(cur.get("end_s"), 2)],
                    "windows_seen": cur.get("windows_seen"),
                }
                if cur
                else None
            ),
            "last_segment": view_record(cam.get("last_segment"), now_ns),
            "latest_caption": view_record(cam.get("latest_caption"), now_ns),
            "active_watches": cam.get("active_watch", []),
        }
    return {"time": iso(result.get("t_ns") or now_ns), "cameras": cameras}


def view_cameras(result: dict[str, Any], now_ns: int) -> dict[str, Any]:
    out = []
    for name, cam in (result.get("cameras") or {}).items():
        cur, cap, seg = cam.get("current_segment"), cam.get("latest_caption"), cam.get("last_segment")
        last_ns = max([r["end_ns"] for r in (cap, seg) if r and isinstance(r.get("end_ns"), int)], default=None)
        out.append(
            {
                "camera": name,
                "stream_s": _r(cur["end_s"], 2) if cur else None,
                "last_event": iso(last_ns) if last_ns else None,
                "latest_caption": cap.get("text") if cap else None,
                "active_watches": cam.get("active_watch", []),
            }
        )
    return {"cameras": out, "time": iso(now_ns)}


def view_ask(result: dict[str, Any], now_ns: int) -> dict[str, Any]:
    out: dict[str, Any] = {"camera": result.get("camera"), "question": result.get("question")}
    if "answer" in result:
        scores = sorted((result.get("scores") or {}).items(), key=lambda kv: -kv[1])
        out["answer"] = result["answer"]
        out["scores"] = {k: _r(v) for k, v in scores[:TOP_SCORES]}
    else:
        out["text"] = result.get("text")
        if result.get("retrieved"):  # a model without a trained decoder: a phrase-bank phrase, with its cosine
            out["retrieved"], out["score"] = True, result.get("score")
    evidence = {"window": result.get("window"), **when(result, now_ns)}
    out["evidence"] = evidence
    out["model_id"] = result.get("model_id")
    return out


def view_watch(w: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "phrase", "camera", "enter", "leave", "source")
    return {k: _r(w.get(k)) for k in keys if k in w}


def view_event(msg: Event | Caption, now_ns: int) -> dict[str, Any]:
    """A message heard on the bus, as `view_record` shows the world's record of it."""
    rec: dict[str, Any] = {
        "camera": msg.cam,
        "segment_id": msg.segment_id,
        "start_ns": msg.start_ns,
        "end_ns": msg.end_ns,
        "start_s": msg.start_s,
        "end_s": msg.end_s,
    }
    if isinstance(msg, Caption):
        rec.update(kind="caption", text=msg.text)
    else:
        rec.update(kind=msg.kind, labels=[{"label": x.label, "score": x.score} for x in msg.labels])
        if msg.kind == "watch":
            rec.update(watch=msg.watch, active=msg.active, watch_id=getattr(msg, "watch_id", None))
    out = view_record(rec, now_ns) or {}
    return out


# -- RPC ---------------------------------------------------------------------------------------------


class Pipeline:
    """MCP's policy over the one `WorldClient`: bounded timeouts, a liveness probe before model calls, and
    every failure a `PipelineError` an agent can act on."""

    def __init__(self, config: BusConfig, *, timeout: float = 3.0, model_timeout: float = 15.0) -> None:
        self.config = config
        self.world = WorldClient(config, timeout=timeout, retries=0)
        self.endpoint = self.world.endpoint
        self.timeout = timeout
        self.model_timeout = max(model_timeout, timeout)
        self._answered = -math.inf  # monotonic time of the last reply

    def no_pipeline(self, within: float) -> PipelineError:
        return PipelineError(
            "no_pipeline",
            f"no perception pipeline answers on {self.endpoint} (waited {within:g}s); start one with "
            f"`perception up` using the same --config and --name, then retry; {where_looked(self.endpoint)}",
        )

    async def call(self, method: str, params: dict[str, Any] | None = None, *, model: bool = False) -> Any:
        """The world's result for `method`; `model=True` for calls that run the model (longer budget)."""
        timeout = self.timeout
        if model:
            if time.monotonic() - self._answered > PROBE_FRESH_S:
                await self.call("now", {})  # fails in `timeout` when nothing runs
            timeout = self.model_timeout
        try:
            result = await self.world.call(method, params, timeout=timeout)
        except WorldUnavailable:
            if model:
                raise PipelineError(
                    "timeout",
                    f"the pipeline did not answer {method!r} within {timeout:g}s (the model may be busy "
                    "or still loading); retry in a few seconds",
                ) from None
            raise self.no_pipeline(timeout) from None
        except RpcError as exc:
            self._answered = time.monotonic()
            raise self._error(method, exc) from None
        self._answered = time.monotonic()
        return result

    @staticmethod
    def _error(method: str, exc: RpcError) -> PipelineError:
        code, message = exc.code, exc.message
        if code == "unknown_camera":
            return PipelineError(code, f"unknown camera: {message}. Call `cameras` for the names.")
        if code == "unknown_method":
            return PipelineError(
                "unsupported",
                f"the running pipeline's world node has no {method!r} method ({message}); it is older than "
                "this `perception mcp`: restart it with `perception up` from this checkout",
            )
        if code == "bad_request":
            return PipelineError(code, f"bad request: {message}")
        if code in ("not_ready", "busy", "encoder_unavailable"):
            return PipelineError(code, f"{message} ({code}; retry in a few seconds)")
        if code == "limit":
            return PipelineError(code, f"{message} (remove a watch with `unwatch` first)")
        return PipelineError(code, f"{method} failed: {code}: {message}")

    def close(self) -> None:
        self.world.close()


# -- the bus feed ------------------------------------------------------------------------------------


class BusFeed:
    """Captions and events as they are published: a bounded cache and a callback per message."""

    def __init__(
        self,
        config: BusConfig,
        *,
        on_caption: Callable[[Caption], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
        retry_s: float = 2.0,
    ) -> None:
        self.config = config
        self.on_caption = on_caption
        self.on_event = on_event
        self.retry_s = retry_s
        self.latest: BoundedDict[str, Caption] = BoundedDict(MAX_CAMERAS)
        self.events: collections.deque[Event] = collections.deque(maxlen=MAX_EVENTS)
        self.connected = asyncio.Event()
        self.counters: collections.Counter[str] = collections.Counter()
        self.log = get_logger("perception.mcp.feed")
        self._errors = RateLimited(30.0)

    async def run(self) -> None:
        """Subscribe (again and again until a proxy answers), then dispatch until cancelled."""
        while True:
            sub = Subscriber(self.config, ["captions/", "events/"], name="mcp")
            try:
                await sub.start(timeout=self.retry_s)
            except (BusNotReady, TimeoutError, zmq.ZMQError) as exc:
                sub.close()
                self.counters["connect_retries"] += 1
                if self._errors.should_log("connect") is not None:
                    self.log.info("no bus proxy yet; retrying", endpoint=self.config.endpoint("sub"), error=str(exc))
                await asyncio.sleep(self.retry_s)
                continue
            self.connected.set()
            self.log.info("following captions/ and events/", endpoint=self.config.endpoint("sub"))
            try:
                async for env in sub:
                    self._dispatch(env.msg)
            finally:
                sub.close()

    def _dispatch(self, msg: Any) -> None:
        try:
            if isinstance(msg, Caption):
                self.latest[msg.cam] = msg
                self.counters["captions"] += 1
                if self.on_caption is not None:
                    self.on_caption(msg)
            elif isinstance(msg, Event):
                msg.embedding = None  # not kept: an agent never sees it
                self.events.append(msg)
                self.counters["events"] += 1
                if self.on_event is not None:
                    self.on_event(msg)
        except Exception as exc:  # one bad message or callback must not end the feed
            self.counters["dispatch_errors"] += 1
            if self._errors.should_log("dispatch") is not None:
                self.log.warning("could not handle a bus message", error=f"{type(exc).__name__}: {exc}")

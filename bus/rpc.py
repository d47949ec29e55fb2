"""Request/reply over ROUTER (server) / DEALER (client) with timeouts, safe retries and structured errors.

Wire (language-neutral, like the pub/sub format):
    request  [request_id (1..64 bytes), msgpack {"method": str, "params": map,
                                                  "timeout_ms": int, "deadline": ns since epoch}]
    reply    [request_id, msgpack {"ok": true, "result": ...}
                                | {"ok": false, "error": {"code": str, "message": str}}]

`timeout_ms` is the request's whole time budget (every attempt together). The server counts it from the
request's arrival on its own monotonic clock: a request whose budget ran out while it waited to run is
dropped unexecuted, and its reply is kept for retries only that long. `deadline` (absolute, the
client's wall clock) is still sent for older servers and ignored here: comparing two hosts' clocks is
off by their skew. A request with neither is served and its reply kept for `default_budget_s`.

A client retries a timed-out request with the *same* request_id. The server executes each request at
most once, a request being (connection, CURVE key, request_id): a retry that arrives while the first
attempt runs waits for it, one that arrives later gets the cached reply, and another connection that
reuses the id is a request of its own (it never reads someone else's reply). A client never queues
requests for a server it is not connected to (ZMQ_IMMEDIATE), so a server that starts late does not run
requests whose senders gave up.

Limits: at most `max_inflight` calls run at once (more get `busy` at once, retry later); the reply cache
is bounded by bytes and by count; a message of more than [request_id, body] is cut at the third frame.
Error codes: bad_request, unknown_method, forbidden (the caller's CURVE key may not call the method,
bus.curve.roles), busy, internal (a handler failure or an unencodable result), and whatever a handler
raises as RpcError.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import zmq
import zmq.asyncio

from bus.config import BusConfig
from bus.logs import RateLimited, get_logger
from bus.security import (
    apply_client,
    apply_limits,
    bind_server,
    ensure_runtime_dir,
    has_roles,
    release,
    role_of,
    user_id,
)

Handler = Callable[[dict[str, Any]], Awaitable[Any] | Any]

MAX_ERROR_MESSAGE = 2000  # chars of an error message (exception texts can repr whole inputs)
_deadline: contextvars.ContextVar[int | None] = contextvars.ContextVar("rpc_deadline", default=None)
_client: contextvars.ContextVar[str | bytes | None] = contextvars.ContextVar("rpc_client", default=None)


def current_deadline() -> int | None:
    """Inside a handler: the request's local deadline (time.monotonic_ns()), or None if it has no budget.
    Handlers that queue work (the encoder's `ask`) drop it once this has passed: nobody waits any more."""
    return _deadline.get()


def current_client() -> str | bytes | None:
    """Inside a handler: who called, for per-client limits. The caller's CURVE key name when it has one
    (all connections of one key are one client), else its connection's ROUTER identity (bytes)."""
    return _client.get()


class RpcError(Exception):
    """A structured error from the server (or raised by a handler to send one)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RpcTimeout(TimeoutError):
    """No reply after every attempt (server down, overloaded, or the handler is too slow)."""


def _error(code: str, message: str) -> dict[str, Any]:
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[:MAX_ERROR_MESSAGE] + f"... ({len(message)} chars)"
    return {"ok": False, "error": {"code": code, "message": message}}


def _packed_error(code: str, message: str) -> bytes:
    return msgpack.packb(_error(code, message))


def _send_nowait(sock: zmq.asyncio.Socket, frames: list[bytes]) -> None:
    """Send now or raise (zmq.Again, ZMQError). Through the asyncio socket, not a sync shadow: its FD is
    edge-triggered, and a send on a shadow can consume the edge that a pending recv on the same socket is
    waiting for, which then sleeps with replies queued. The NOBLOCK future is already done here."""
    fut = sock.send_multipart(frames, flags=zmq.NOBLOCK)
    if fut.done():
        fut.result()  # raises what the send raised; a retrieved exception is never "never retrieved"
    else:  # only behind a blocking send, which this module never makes
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())


def _recv_nowait(sock: zmq.asyncio.Socket) -> zmq.Frame:
    """The next frame already queued, or zmq.Again."""
    return sock.recv(zmq.NOBLOCK, copy=False).result()


Key = tuple[bytes, "str | None", bytes]  # (ROUTER identity of the connection, CURVE User-Id, request_id)


@dataclass
class _Call:
    deadline_ns: int | None  # local monotonic; None: no budget given
    ttl_ns: int  # how long the reply is kept for retries


class RpcServer:
    """Binds `bus.rpc`; dispatches requests to handlers by method name, each as its own task."""

    def __init__(
        self,
        config: BusConfig,
        handlers: dict[str, Handler] | None = None,
        *,
        endpoint: str | None = None,
        ctx: zmq.asyncio.Context | None = None,
        name: str = "rpc",
        replay_cache: int = 10_000,
        reply_cache_bytes: int = 16 * 1024 * 1024,
        max_inflight: int = 64,
        max_request_id: int = 64,
        default_budget_s: float = 60.0,
        max_budget_s: float = 3600.0,
        batch: int = 64,
    ) -> None:
        self.config = config
        endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint or [config.endpoint("rpc")])
        self.endpoint = " ".join(endpoints)  # what error messages name
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self._ctx = ctx or zmq.asyncio.Context.instance()
        self._sock: zmq.asyncio.Socket | None = None
        self._curve = False
        # finished requests: key -> (packed reply, expires at monotonic ns), oldest first
        self._done: collections.OrderedDict[Key, tuple[bytes, int]] = collections.OrderedDict()
        self._done_bytes = 0
        self._inflight: dict[Key, _Call] = {}
        self._replay_cache = replay_cache
        self.reply_cache_bytes = reply_cache_bytes
        self.max_inflight = max_inflight
        self.max_request_id = max_request_id
        self.default_budget_ns = int(default_budget_s * 1e9)
        self.max_budget_ns = int(max_budget_s * 1e9)
        self.batch = batch  # messages taken from the socket before the handlers they started get to run
        self._next_sweep = 0
        self._tasks: set[asyncio.Task] = set()
        self.counters: collections.Counter[str] = collections.Counter()
        for key in ("requests", "busy", "forbidden", "expired", "malformed", "reply_cache_bytes"):
            self.counters[key] += 0
        self.bound = asyncio.Event()
        self.log = get_logger("bus.rpc.server", node=name)
        self._rate_limited = RateLimited(1.0)

    def method(self, name: str) -> Callable[[Handler], Handler]:
        """Decorator: `@server.method("now") async def now(params): ...`."""

        def add(fn: Handler) -> Handler:
            self.handlers[name] = fn
            return fn

        return add

    def bind(self) -> None:
        if self._sock is not None:
            return
        if self.endpoint.startswith("ipc://"):
            ensure_runtime_dir(self.config)
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        apply_limits(sock, self.config)
        try:
            self._curve = bind_server(sock, self.endpoint, self.config, where="bus.rpc")
        except BaseException:
            sock.close(linger=0)
            raise
        self._sock = sock
        self.bound.set()

    async def run(self) -> None:
        """Serve until cancelled."""
        self.bind()
        assert self._sock is not None
        self.log.info("rpc server up", endpoint=self.endpoint, methods=sorted(self.handlers))
        try:
            while True:
                first = await self._sock.recv(copy=False)
                self._on_request(self._rest_of(first))
                for _ in range(self.batch - 1):  # what is already waiting, in one go
                    try:
                        first = _recv_nowait(self._sock)
                    except zmq.Again:
                        break
                    self._on_request(self._rest_of(first))
                await asyncio.sleep(0)  # the handlers started get to run, even under a flood
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._sock.close(linger=0)
            self._sock = None
            if self._curve:
                release(self._ctx)
                self._curve = False

    def _rest_of(self, first: zmq.Frame) -> list[zmq.Frame]:
        """The message that starts with `first`, frame by frame: frames past the third are read and
        dropped, never collected (libzmq bounds a frame's size, not how many a message has)."""
        frames, part, extra = [first], first, 0
        while part.more:
            try:
                part = _recv_nowait(self._sock)  # a message arrives whole: never Again here
            except zmq.Again:
                break
            if len(frames) < 4:
                frames.append(part)
            else:
                extra += 1
        if extra:
            self.counters["frames_dropped"] += extra
        return frames

    def _send(self, identity: bytes, request_id: bytes, reply: bytes) -> None:
        try:
            _send_nowait(self._sock, [identity, request_id, reply])
        except zmq.ZMQError as exc:  # client gone or its queue full: it will retry or time out
            self.counters["reply_failed"] += 1
            self.log.debug("reply not sent", error=str(exc))

    def _refuse(self, counter: str, identity: bytes, request_id: bytes, code: str, message: str) -> None:
        self.counters[counter] += 1
        if self._rate_limited.should_log(counter) is not None:
            self.log.warning("rpc request refused", code=code, reason=message[:200])
        self._send(identity, request_id, _packed_error(code, message))

    def _on_request(self, frames: list[zmq.Frame]) -> None:
        now = time.monotonic_ns()
        self.counters["requests"] += 1
        if now >= self._next_sweep:
            self._sweep(now)
        if len(frames) != 3:
            self.counters["malformed"] += 1
            if len(frames) >= 2:
                self._send(
                    frames[0].bytes,
                    frames[1].bytes,
                    _packed_error("bad_request", f"expected [request_id, body], got {len(frames) - 1}+ parts"),
                )
            return
        identity, request_id = frames[0].bytes, frames[1].bytes
        if not 1 <= len(request_id) <= self.max_request_id:
            self._refuse(
                "malformed",
                identity,
                request_id,
                "bad_request",
                f"request_id must be 1..{self.max_request_id} bytes, got {len(request_id)}",
            )
            return
        uid = user_id(frames[1])  # the peer's key name (CURVE), or None
        key: Key = (identity, uid, request_id)
        cached = self._done.get(key)
        if cached is not None:
            if cached[1] > now:  # a retry of a finished request: same reply, no second execution
                self.counters["replayed"] += 1
                self._send(identity, request_id, cached[0])
                return
            self._forget(key)
        if key in self._inflight:  # a retry while the first attempt runs: its reply goes to this connection
            self.counters["joined"] += 1
            return
        try:
            request = msgpack.unpackb(frames[2].bytes, raw=False)
            method, params = request["method"], request.get("params") or {}
            if not isinstance(method, str) or not isinstance(params, dict):
                raise TypeError("method must be a string and params a map")
            timeout_ms = request.get("timeout_ms")
            if timeout_ms is not None and (isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float))):
                raise TypeError("timeout_ms must be a number")
        except Exception as exc:  # garbage from the network: answer, never crash
            self._refuse("malformed", identity, request_id, "bad_request", f"unreadable request: {exc}")
            return
        if has_roles(self.config) and not role_of(self.config, uid).may_call(method):
            self._refuse("forbidden", identity, request_id, "forbidden", f"key {uid!r} may not call {method!r}")
            return
        if len(self._inflight) >= self.max_inflight:
            self._refuse(
                "busy",
                identity,
                request_id,
                "busy",
                f"{len(self._inflight)} calls in flight (the server's limit); retry later",
            )
            return
        if timeout_ms is None:
            call = _Call(None, self.default_budget_ns)
        else:
            budget_ms = min(float(timeout_ms), self.max_budget_ns / 1e6)
            budget = int(budget_ms * 1e6) if budget_ms > 0 else 0  # negative or NaN: already expired
            call = _Call(now + budget, budget)
        self._inflight[key] = call
        task = asyncio.create_task(self._execute(key, method, params, call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, key: Key, method: str, params: dict[str, Any], call: _Call) -> None:
        try:
            if call.deadline_ns is not None and time.monotonic_ns() > call.deadline_ns:
                self.counters["expired"] += 1  # its budget ran out while it waited: nobody is waiting
                return
            _deadline.set(call.deadline_ns)  # this task's own context
            _client.set(key[1] if key[1] is not None else key[0])
            packed = self._pack(method, await self._reply(method, params))
            self._remember(key, packed, call.ttl_ns)
            self._send(key[0], key[2], packed)
        finally:  # whatever happened, the request is no longer in flight: a retry never hangs on it
            self._inflight.pop(key, None)

    async def _reply(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        handler = self.handlers.get(method)
        if handler is None:
            return _error("unknown_method", f"no method {method!r}; available: {sorted(self.handlers)}")
        try:
            result = handler(params)
            if inspect.isawaitable(result):
                result = await result
            return {"ok": True, "result": result}
        except RpcError as exc:
            return _error(str(exc.code), str(exc.message))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a handler bug becomes an error reply, the server keeps serving
            self.counters["handler_errors"] += 1
            if self._rate_limited.should_log(("handler", method)) is not None:
                self.log.exception("rpc handler failed", method=method)
            return _error("internal", f"{type(exc).__name__}: {exc}")

    def _pack(self, method: str, reply: dict[str, Any]) -> bytes:
        """The reply's bytes; one that cannot be encoded or sent becomes an `internal` error instead."""
        try:
            packed = msgpack.packb(reply, use_bin_type=True)
        except Exception as exc:  # OverflowError (ints beyond 64 bit), TypeError, ValueError (nesting) ...
            self.counters["unencodable"] += 1
            return _packed_error("internal", f"result of {method!r} cannot be encoded: {type(exc).__name__}: {exc}")
        if len(packed) > self.config.max_msg_size:  # the client would drop the connection (ZMQ_MAXMSGSIZE)
            self.counters["unencodable"] += 1
            return _packed_error(
                "internal",
                f"result of {method!r} is {len(packed)} bytes; bus.max_msg_size is {self.config.max_msg_size}",
            )
        return packed

    # -- reply cache ------------------------------------------------------------------------------------

    @staticmethod
    def _cost(key: Key, packed: bytes) -> int:
        return len(packed) + len(key[0]) + len(key[2]) + 128  # + bookkeeping

    def _remember(self, key: Key, packed: bytes, ttl_ns: int) -> None:
        if ttl_ns <= 0:
            return
        if self._cost(key, packed) > self.reply_cache_bytes:  # keep a note, not the reply, for a retry
            packed = _packed_error(
                "internal", f"the reply ({len(packed)} bytes) was sent once and is too large to keep for a retry"
            )
        self._forget(key)
        self._done[key] = (packed, time.monotonic_ns() + ttl_ns)
        self._done_bytes += self._cost(key, packed)
        while self._done and (self._done_bytes > self.reply_cache_bytes or len(self._done) > self._replay_cache):
            self._forget(next(iter(self._done)))
            self.counters["reply_cache_evicted"] += 1
        self.counters["reply_cache_bytes"] = self._done_bytes

    def _forget(self, key: Key) -> None:
        entry = self._done.pop(key, None)
        if entry is not None:
            self._done_bytes -= self._cost(key, entry[0])
            self.counters["reply_cache_bytes"] = self._done_bytes

    def _sweep(self, now: int) -> None:
        """Drop every reply past its request's budget (at most once a second: O(cache))."""
        self._next_sweep = now + 1_000_000_000
        for key in [k for k, (_, expires) in self._done.items() if expires <= now]:
            self._forget(key)
            self.counters["reply_cache_expired"] += 1


class RpcClient:
    """Connects to `bus.rpc`; `await call(method, params)` returns the result or raises RpcError/RpcTimeout.

    `endpoint` may list several servers of one service (the encoder's workers): the DEALER socket then
    spreads requests over those connected, ZeroMQ's own load balancing, and skips one that is down."""

    def __init__(
        self,
        config: BusConfig,
        *,
        endpoint: str | Sequence[str] | None = None,
        ctx: zmq.asyncio.Context | None = None,
        timeout: float = 1.0,
        retries: int = 2,
    ) -> None:
        self.config = config
        endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint or [config.endpoint("rpc")])
        self.endpoint = " ".join(endpoints)  # what error messages name
        self.timeout = timeout
        self.retries = retries
        self._ctx = ctx or zmq.asyncio.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        # queue only to a connected server: a request sent while none runs fails its attempt here instead
        # of being delivered, and run, after its sender gave up
        self._sock.setsockopt(zmq.IMMEDIATE, 1)
        apply_limits(self._sock, config)
        for ep in endpoints:  # one service: one server key (apply_client sets it on the socket)
            apply_client(self._sock, ep, config.curve)
            self._sock.connect(ep)
        self._pending: dict[bytes, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None
        self.log = get_logger("bus.rpc.client")

    async def _read_replies(self) -> None:
        while True:
            frames = await self._sock.recv_multipart()
            if len(frames) != 2:
                continue
            fut = self._pending.get(frames[0])
            if fut is None or fut.done():
                continue  # a late reply to an attempt we already gave up on
            try:
                reply = msgpack.unpackb(frames[1], raw=False)
            except Exception as exc:
                reply = _error("bad_reply", f"unreadable reply: {exc}")
            fut.set_result(reply)

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> dict[str, Any]:
        """The reply map itself ({ok, result} or {ok: false, error}); RpcTimeout if none came."""
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_replies())
        timeout = self.timeout if timeout is None else timeout
        retries = self.retries if retries is None else retries
        request_id = uuid.uuid4().bytes
        budget_s = timeout * (retries + 1)
        body = msgpack.packb(
            {
                "method": method,
                "params": params or {},
                "timeout_ms": int(budget_s * 1000),
                "deadline": time.time_ns() + int(budget_s * 1e9),
            },  # for servers before timeout_ms
            use_bin_type=True,
        )
        fut = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        try:
            loop = asyncio.get_running_loop()
            for attempt in range(retries + 1):
                end = loop.time() + timeout
                await self._send(request_id, body, timeout)
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), max(0.0, end - loop.time()))
                except TimeoutError:
                    self.log.debug("rpc attempt timed out", method=method, attempt=attempt + 1)
            raise RpcTimeout(f"{method!r} on {self.endpoint}: no reply after {retries + 1} attempt(s) of {timeout}s")
        finally:
            self._pending.pop(request_id, None)
            fut.cancel()

    async def _send(self, request_id: bytes, body: bytes, timeout: float) -> None:
        """Send once connected (ZMQ_IMMEDIATE queues nothing for an absent server), waiting at most
        `timeout`; not connected by then, or the queue full: the attempt is lost like a dropped one."""
        for _ in range(2):
            try:
                _send_nowait(self._sock, [request_id, body])
                return
            except zmq.Again:
                if not await self._sock.poll(int(timeout * 1000), zmq.POLLOUT):
                    return

    async def call(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        reply = await self.request(method, params, **kw)
        if reply.get("ok") is True:
            return reply.get("result")
        error = reply.get("error") or {}
        raise RpcError(str(error.get("code", "unknown")), str(error.get("message", "")))

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self._sock.close(linger=0)

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

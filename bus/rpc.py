"""Request/reply over ROUTER (server) / DEALER (client) with timeouts, safe retries and structured errors.

Wire (language-neutral, like the pub/sub format):
    request  [request_id, msgpack {"method": str, "params": map, "deadline": ns since epoch}]
    reply    [request_id, msgpack {"ok": true, "result": ...}
                                | {"ok": false, "error": {"code": str, "message": str}}]

A client retries a timed-out request with the *same* request_id. The server executes each request_id at
most once: a retry that arrives while the first attempt runs waits for it, and one that arrives later
gets the cached reply. Requests whose deadline has passed (e.g. queued while the server was down) are
dropped unexecuted.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import time
import uuid
from typing import Any, Awaitable, Callable

import msgpack
import zmq
import zmq.asyncio

from bus.config import BusConfig
from bus.logs import RateLimited, get_logger
from bus.security import apply_client, apply_limits, apply_server, start_authenticator

Handler = Callable[[dict[str, Any]], Awaitable[Any] | Any]


class RpcError(Exception):
    """A structured error from the server (or raised by a handler to send one)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RpcTimeout(TimeoutError):
    """No reply after every attempt (server down, overloaded, or the handler is too slow)."""


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


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
    ) -> None:
        self.config = config
        self.endpoint = endpoint or config.endpoint("rpc")
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self._ctx = ctx or zmq.asyncio.Context.instance()
        self._sock: zmq.asyncio.Socket | None = None
        self._done: collections.OrderedDict[bytes, bytes] = collections.OrderedDict()
        self._inflight: dict[bytes, list[bytes]] = {}
        self._replay_cache = replay_cache
        self._tasks: set[asyncio.Task] = set()
        self._auth = None
        self.counters = collections.Counter()
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
        self.config.ensure_runtime_dir()
        self._auth = start_authenticator(self._ctx, self.config)
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        apply_limits(sock, self.config)
        apply_server(sock, self.endpoint, self.config.curve)
        sock.bind(self.endpoint)
        self._sock = sock
        # NOBLOCK sends go through a sync shadow: on a zmq.asyncio socket they return a Future whose
        # zmq.Again nobody awaits ("Future exception was never retrieved"), and the except below never runs.
        self._sync = zmq.Socket.shadow(sock.underlying)
        self.bound.set()

    async def run(self) -> None:
        """Serve until cancelled."""
        self.bind()
        assert self._sock is not None
        self.log.info("rpc server up", endpoint=self.endpoint, methods=sorted(self.handlers))
        try:
            while True:
                frames = await self._sock.recv_multipart()
                self._on_request(frames)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._sock.close(linger=0)
            self._sock = None
            if self._auth:
                self._auth.stop()

    def _send(self, identity: bytes, request_id: bytes, reply: bytes) -> None:
        try:
            self._sync.send_multipart([identity, request_id, reply], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # client gone or its queue full: it will retry or time out
            self.counters["reply_failed"] += 1
            self.log.debug("reply not sent", error=str(exc))

    def _on_request(self, frames: list[bytes]) -> None:
        self.counters["requests"] += 1
        if len(frames) != 3:
            self.counters["malformed"] += 1
            if len(frames) >= 2:
                reply = msgpack.packb(_error("bad_request", f"expected [request_id, body], got {len(frames) - 1} parts"))
                self._send(frames[0], frames[1], reply)
            return
        identity, request_id, body = frames
        cached = self._done.get(request_id)
        if cached is not None:  # a retry of a finished request: same reply, no second execution
            self.counters["replayed"] += 1
            self._send(identity, request_id, cached)
            return
        if request_id in self._inflight:  # a retry while the first attempt runs: reply to it too
            self.counters["joined"] += 1
            self._inflight[request_id].append(identity)
            return
        try:
            request = msgpack.unpackb(body, raw=False)
            method, params, deadline = request["method"], request.get("params") or {}, request.get("deadline")
            if not isinstance(method, str) or not isinstance(params, dict):
                raise TypeError("method must be a string and params a map")
        except Exception as exc:  # garbage from the network: answer, never crash
            self.counters["malformed"] += 1
            self._send(identity, request_id, msgpack.packb(_error("bad_request", f"unreadable request: {exc}")))
            return
        if isinstance(deadline, int) and deadline < time.time_ns():
            self.counters["expired"] += 1
            return
        self._inflight[request_id] = [identity]
        task = asyncio.create_task(self._execute(request_id, method, params))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, request_id: bytes, method: str, params: dict[str, Any]) -> None:
        handler = self.handlers.get(method)
        if handler is None:
            reply = _error("unknown_method", f"no method {method!r}; available: {sorted(self.handlers)}")
        else:
            try:
                result = handler(params)
                if inspect.isawaitable(result):
                    result = await result
                reply = {"ok": True, "result": result}
            except RpcError as exc:
                reply = _error(exc.code, exc.message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a handler bug becomes an error reply, the server keeps serving
                self.counters["handler_errors"] += 1
                if self._rate_limited.should_log(("handler", method)) is not None:
                    self.log.exception("rpc handler failed", method=method)
                reply = _error("internal", f"{type(exc).__name__}: {exc}")
        try:
            packed = msgpack.packb(reply, use_bin_type=True)
        except (TypeError, ValueError) as exc:
            packed = msgpack.packb(_error("internal", f"result of {method!r} cannot be encoded: {exc}"))
        self._done[request_id] = packed
        while len(self._done) > self._replay_cache:
            self._done.popitem(last=False)
        for identity in self._inflight.pop(request_id, []):
            self._send(identity, request_id, packed)


class RpcClient:
    """Connects to `bus.rpc`; `await call(method, params)` returns the result or raises RpcError/RpcTimeout."""

    def __init__(
        self,
        config: BusConfig,
        *,
        endpoint: str | None = None,
        ctx: zmq.asyncio.Context | None = None,
        timeout: float = 1.0,
        retries: int = 2,
    ) -> None:
        self.config = config
        self.endpoint = endpoint or config.endpoint("rpc")
        self.timeout = timeout
        self.retries = retries
        self._ctx = ctx or zmq.asyncio.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        apply_limits(self._sock, config)
        apply_client(self._sock, self.endpoint, config.curve)
        self._sock.connect(self.endpoint)
        self._sync = zmq.Socket.shadow(self._sock.underlying)  # for NOBLOCK sends (see RpcServer.bind)
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
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None,
        retries: int | None = None,
    ) -> dict[str, Any]:
        """The reply map itself ({ok, result} or {ok: false, error}); RpcTimeout if none came."""
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_replies())
        timeout = self.timeout if timeout is None else timeout
        retries = self.retries if retries is None else retries
        request_id = uuid.uuid4().bytes
        deadline = time.time_ns() + int(timeout * (retries + 1) * 1e9)
        body = msgpack.packb({"method": method, "params": params or {}, "deadline": deadline}, use_bin_type=True)
        fut = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        try:
            for attempt in range(retries + 1):
                try:
                    self._sync.send_multipart([request_id, body], flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass  # queue full (no server): this attempt waits out its timeout like a lost one
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), timeout)
                except TimeoutError:
                    self.log.debug("rpc attempt timed out", method=method, attempt=attempt + 1)
            raise RpcTimeout(
                f"{method!r} on {self.endpoint}: no reply after {retries + 1} attempt(s) of {timeout}s"
            )
        finally:
            self._pending.pop(request_id, None)
            fut.cancel()

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

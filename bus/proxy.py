"""The bus proxy: XSUB (bus.pub, publishers connect) <-> XPUB (bus.sub, subscribers connect).

Forwarding runs in libzmq's own `zmq_proxy_steerable` on a thread, so messages never touch Python and
large frames are passed along without copies. The asyncio side of the process:
- answers readiness probes (`_bus/ready/<nonce>` subscriptions, see bus/pubsub.py) through an XPUB
  socket connected to the XSUB over inproc; the probe reply travels the same path as data;
- asks the proxy for its counters (the STATISTICS control command) and publishes them on `stats/bus`.
The XSUB subscribes to everything, so publishers forward all traffic and the proxy alone filters.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
import uuid

import zmq
import zmq.asyncio

from bus.codec import encode
from collections.abc import AsyncIterator

from bus.config import BusConfig
from bus.logs import get_logger
from bus.message import Stats
from bus.pubsub import READY_PREFIX
from bus.security import apply_limits, apply_server, start_authenticator

log = get_logger("bus.proxy")

_STAT_NAMES = (
    "frontend_msgs_in", "frontend_bytes_in", "frontend_msgs_out", "frontend_bytes_out",
    "backend_msgs_in", "backend_bytes_in", "backend_msgs_out", "backend_bytes_out",
)  # frontend = XSUB (publishers), backend = XPUB (subscribers); libzmq counts message parts


class Proxy:
    """One bus proxy; `await run()` until cancelled. `bound` is set once both endpoints accept peers."""

    def __init__(self, config: BusConfig, *, src: str = "bus") -> None:
        self.config = config
        self.src = src
        self.pub_endpoint = config.endpoint("pub")
        self.sub_endpoint = config.endpoint("sub")
        self._ctx = zmq.Context()
        self._actx = zmq.asyncio.Context.shadow(self._ctx.underlying)
        self._id = uuid.uuid4().hex[:8]
        self._inproc = f"inproc://bus-proxy-in-{self._id}"
        self._control_ep = f"inproc://bus-proxy-ctl-{self._id}"
        self._thread_ready = threading.Event()
        self._thread_error: BaseException | None = None
        self.bound = asyncio.Event()
        self.counters: dict[str, float] = {}
        self.probes_answered = 0

    def _forward(self) -> None:
        """Thread body: own the XSUB/XPUB sockets and run the C proxy loop until TERMINATE."""
        xsub = self._ctx.socket(zmq.XSUB)
        xpub = self._ctx.socket(zmq.XPUB)
        control = self._ctx.socket(zmq.PAIR)
        try:
            for sock, ep, opt in ((xsub, self.pub_endpoint, zmq.RCVHWM), (xpub, self.sub_endpoint, zmq.SNDHWM)):
                sock.setsockopt(opt, self.config.proxy_hwm)
                sock.setsockopt(zmq.LINGER, 0)
                apply_limits(sock, self.config)
                apply_server(sock, ep, self.config.curve)
                sock.bind(ep)
            xsub.bind(self._inproc)
            control.bind(self._control_ep)
            xsub.send(b"\x01")  # subscribe to everything: publishers forward all, the XPUB filters
        except BaseException as exc:  # reported to run(), which raises it
            self._thread_error = exc
            self._thread_ready.set()
            for s in (xsub, xpub, control):
                s.close(linger=0)
            return
        self._thread_ready.set()
        try:
            zmq.proxy_steerable(xsub, xpub, None, control)
        except zmq.ContextTerminated:
            pass
        finally:
            for s in (xsub, xpub, control):
                s.close(linger=0)

    async def run(self) -> None:
        self.config.ensure_runtime_dir()
        auth = start_authenticator(self._actx, self.config)  # must exist before CURVE peers connect
        thread = threading.Thread(target=self._forward, name="bus-proxy", daemon=True)
        thread.start()
        await asyncio.to_thread(self._thread_ready.wait)
        if self._thread_error is not None:
            if auth:
                auth.stop()
            raise self._thread_error
        control = self._actx.socket(zmq.PAIR)
        control.connect(self._control_ep)
        responder = self._actx.socket(zmq.XPUB)
        responder.setsockopt(zmq.XPUB_VERBOSE, 1)
        responder.setsockopt(zmq.LINGER, 0)
        responder.connect(self._inproc)
        log.info("bus proxy up", pub=self.pub_endpoint, sub=self.sub_endpoint)
        self.bound.set()
        try:
            await asyncio.gather(self._answer_probes(responder), self._publish_stats(control, responder))
        finally:
            try:
                await control.send(b"TERMINATE")
            except zmq.ZMQError:
                pass
            await asyncio.to_thread(thread.join, 5.0)
            control.close(linger=0)
            responder.close(linger=0)
            if auth:
                auth.stop()
            self._ctx.term()
            log.info("bus proxy stopped")

    async def _answer_probes(self, responder: zmq.asyncio.Socket) -> None:
        ready = b"\x01" + READY_PREFIX.encode()
        while True:
            frame = await responder.recv()
            if frame.startswith(ready):
                await responder.send_multipart([frame[1:], b""])
                self.probes_answered += 1

    async def _publish_stats(self, control: zmq.asyncio.Socket, out: zmq.asyncio.Socket) -> None:
        started = time.monotonic()
        seq = 0
        while True:
            await control.send(b"STATISTICS")
            values = [struct.unpack("=Q", p)[0] for p in await control.recv_multipart()]
            self.counters = {name: float(v) for name, v in zip(_STAT_NAMES, values)}
            self.counters["probes_answered"] = float(self.probes_answered)
            self.counters["uptime_s"] = round(time.monotonic() - started, 3)
            msg = Stats(node="bus", counters=self.counters)
            await out.send_multipart(encode("stats/bus", msg, seq=seq, src=self.src, t_ns=time.time_ns()))
            seq += 1
            await asyncio.sleep(self.config.stats_interval_s)


async def run_proxy(config: BusConfig, duration: float | None = None) -> None:
    """Run a proxy until cancelled, or for `duration` seconds."""
    proxy = Proxy(config)
    task = asyncio.create_task(proxy.run())
    try:
        if duration is None:
            await task
        else:
            done, _ = await asyncio.wait({task}, timeout=duration)
            if task in done:
                task.result()
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


@contextlib.asynccontextmanager
async def proxy_in_background(config: BusConfig) -> AsyncIterator[Proxy]:
    """An in-process proxy for the body of an `async with` (tests, notebooks, single-process demos).

    Returns once both endpoints accept peers; a proxy that fails to start raises here, not later.
    """
    proxy = Proxy(config)
    task = asyncio.create_task(proxy.run())
    bound = asyncio.create_task(proxy.bound.wait())
    await asyncio.wait({task, bound}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        bound.cancel()
        task.result()
    try:
        yield proxy
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

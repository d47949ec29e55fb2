"""The bus proxy: XSUB (bus.pub, publishers connect) <-> XPUB (bus.sub, subscribers connect).

It is the door of the bus, so it checks what comes in before anyone else holds it:
- downstream (publishers -> subscribers): each message is read part by part; one with more than
  `bus.max_parts` parts, more than `bus.max_msg_size` bytes in all or a topic over `bus.max_topic_bytes`
  is dropped as it is read (its parts are released at once, never forwarded or collected), and with
  `bus.curve.roles` a key may publish only on its prefixes (and on a `bus.curve.topic_owners` prefix,
  watches/, only a key listed there). Frames are forwarded without copies.
- upstream (subscribers -> publishers): nothing. The XPUB runs in manual mode; the proxy applies each
  subscription itself (after the key's role allows it) and answers readiness probes, and every other
  frame a subscriber sends (user data that a plain zmq_proxy would pass on to every publisher) is
  dropped and counted. Publishers only ever see the proxy's own catch-all subscription.
- a subscriber connection that sends a frame longer than a subscription is dropped by libzmq (ZMQ_MAXMSGSIZE
  on the XPUB). libzmq still records every subscription message it receives in its own per-connection trie
  before the proxy sees it (XPUB_MANUAL keeps them for unsubscribing on disconnect): that memory is
  bounded by the connection's lifetime, not by us (docs/reliability.md has the figure).
- subscriptions in force are bounded (`bus.max_subscriptions` distinct prefixes, `bus.max_subscription_bytes`
  of them in all): libzmq's tries grow by ~26 kB per random prefix, so an unbounded table is an OOM.
- readiness probes (`_bus/ready/<nonce>`, see bus/pubsub.py) are answered with a `BusReady` message in
  the wire format, after every earlier subscription of that connection is in force.
- its counters go out as `Stats` on stats/bus once a second.

Forwarding runs on one thread with a zmq.Poller; the asyncio side binds the sockets (so CURVE's ZAP
handler runs on its loop), publishes stats and stops the thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator

import psutil
import zmq
import zmq.asyncio

from bus.bounded import BoundedDict
from bus.codec import encode
from bus.config import BusConfig
from bus.logs import RateLimited, get_logger
from bus.message import BusReady, Stats
from bus.security import (
    apply_limits,
    bind_server,
    checks_publishers,
    ensure_runtime_dir,
    has_roles,
    may_publish,
    release,
    role_of,
    user_id,
)

log = get_logger("bus.proxy")

READY_PREFIX = b"_bus/ready/"
BATCH = 512  # messages moved per socket per wake-up before the other direction gets a turn
PROBE_RESERVE = 256  # table slots only readiness probes may use, so a full table still answers (and says so)
# A restarted proxy forwards nothing for this long: publishers flush what they queued during the outage as soon
# as they reconnect, and subscribers come back on their own reconnect timer (ZMQ_RECONNECT_IVL, 100 ms) and
# resend their subscriptions; forwarding at once sent the outage's messages to nobody. Applied when clients may
# be waiting: an ipc:// socket file is already there (a proxy served it before), or an endpoint is tcp://.
RESUBSCRIBE_GRACE_S = 0.5


class _Forwarder:
    """The proxy's thread body and its counters (read by the asyncio side; ints, so no lock needed)."""

    def __init__(
        self, config: BusConfig, xsub: zmq.Socket, xpub: zmq.Socket, control: zmq.Socket, grace_s: float = 0.0
    ) -> None:
        self.config = config
        self.grace_s = grace_s  # forward nothing for this long (subscriptions are applied meanwhile)
        self.xsub, self.xpub, self.control = xsub, xpub, control
        self.roles = has_roles(config)
        self.checks_publishers = checks_publishers(config)
        self.counters: collections.Counter[str] = collections.Counter()
        self._denied: BoundedDict[str | None, list[str]] = BoundedDict(
            1024
        )  # key -> prefixes refused since its last probe
        # distinct prefixes in force -> connections holding each: bounds libzmq's subscription tries, which
        # cost ~26 kB per random 200-byte prefix (20k of them took 522 MB). Unsubscriptions, explicit or
        # sent by libzmq for a closed connection (XPUB_MANUAL), give their slot back.
        self._active: dict[bytes, int] = {}
        self._active_bytes = 0
        self._probe_seq = 0
        self._log_limit = RateLimited(1.0)

    def run(self) -> None:
        poller = zmq.Poller()
        for sock in (self.xsub, self.xpub, self.control):
            poller.register(sock, zmq.POLLIN)
        first = zmq.Poller()  # subscriptions only, for grace_s after a restart
        for sock in (self.xpub, self.control):
            first.register(sock, zmq.POLLIN)
        forward_from = time.monotonic() + self.grace_s
        while True:
            wait_s = forward_from - time.monotonic()
            ready = dict(first.poll(wait_s * 1000) if wait_s > 0 else poller.poll())
            if self.control in ready and self.control.recv() == b"TERMINATE":
                return
            if self.xpub in ready:
                for _ in range(BATCH):
                    if not self._upstream():
                        break
            if self.xsub in ready:
                for _ in range(BATCH):
                    if not self._downstream():
                        break

    # -- publishers -> subscribers ------------------------------------------------------------------------

    def _downstream(self) -> bool:
        """Move one message; False when none is waiting."""
        try:
            first = self.xsub.recv(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        c, cfg = self.counters, self.config
        parts = [first]
        total = len(first)
        reason = None
        more = first.more
        while more:  # a multipart arrives whole: the rest is already here, and is read one part at a time
            part = self.xsub.recv(copy=False)
            more = part.more
            if reason is not None:
                continue  # released as soon as read: an oversize message is never held whole by us
            total += len(part)
            if len(parts) >= cfg.max_parts:
                reason = "parts"
            elif total > cfg.max_msg_size:
                reason = "size"
            else:
                parts.append(part)
        c["frontend_msgs_in"] += 1
        c["frontend_bytes_in"] += total
        if reason is None and len(first) > cfg.max_topic_bytes:
            reason = "topic"
        if reason is None and self.checks_publishers:
            uid = user_id(first)
            if not may_publish(cfg, uid, first.bytes.decode("utf-8", "replace")):
                reason = "denied"
                self._warn("publish denied", key=uid, topic=first.bytes[:80].decode("utf-8", "replace"))
        if reason is not None:
            parts.clear()
            c[f"dropped_{reason}"] += 1
            self._warn("message dropped", reason=reason, bytes=total)
            return True
        self.xpub.send_multipart(parts, copy=False)  # an XPUB at its HWM drops for that subscriber only
        c["backend_msgs_out"] += 1
        c["backend_bytes_out"] += total
        return True

    # -- subscribers -> (nobody) --------------------------------------------------------------------------

    def _upstream(self) -> bool:
        """Apply one subscription or probe, or drop one frame of user data; False when none is waiting."""
        try:
            frame = self.xpub.recv(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        c = self.counters
        c["backend_msgs_in"] += 1
        if frame.more:  # a multipart from a subscriber is never a subscription
            while self.xpub.getsockopt(zmq.RCVMORE):
                self.xpub.recv(copy=False)
            c["upstream_dropped"] += 1
            return True
        data = frame.bytes
        if not data or data[0] not in (0, 1):
            c["upstream_dropped"] += 1
            return True
        prefix = data[1:]
        if len(prefix) > self.config.max_topic_bytes + len(READY_PREFIX) + 64:
            c["subscriptions_denied"] += 1
            return True
        uid = user_id(frame) if self.roles else None
        if data[0] == 0:
            self.xpub.setsockopt(zmq.UNSUBSCRIBE, prefix)
            self._release(prefix)
            c["unsubscriptions"] += 1
            return True
        if prefix.startswith(READY_PREFIX):
            if not self._reserve(prefix, reserve=PROBE_RESERVE):
                c["subscriptions_denied"] += 1
                return True  # the prober times out: the table is full even for probes
            self.xpub.setsockopt(
                zmq.SUBSCRIBE, prefix
            )  # applies to the connection that sent it, after its earlier ones
            denied = self._denied.pop(uid, None) or []
            msg = BusReady(denied=denied)
            self.xpub.send_multipart(
                encode(prefix.decode("utf-8", "replace"), msg, seq=self._probe_seq, src="bus", t_ns=time.time_ns())
            )
            self._probe_seq += 1
            c["probes_answered"] += 1
            return True
        text = prefix.decode("utf-8", "replace")
        if self.roles and not role_of(self.config, uid).may_subscribe(text):
            c["subscriptions_denied"] += 1
            self._denied.setdefault(uid, list).append(text)
            self._warn("subscription denied", key=uid, prefix=text[:80])
            return True
        if not self._reserve(prefix):
            c["subscriptions_denied"] += 1
            c["subscriptions_table_full"] += 1
            self._denied.setdefault(uid, list).append(text)
            self._warn(
                "subscription table full",
                key=uid,
                prefix=text[:80],
                active=len(self._active),
                active_bytes=self._active_bytes,
            )
            return True
        self.xpub.setsockopt(zmq.SUBSCRIBE, prefix)
        c["subscriptions"] += 1
        return True

    def _reserve(self, prefix: bytes, reserve: int = 0) -> bool:
        """Count one more connection on `prefix`; False (nothing counted) if a new prefix would not fit."""
        held = self._active.get(prefix)
        if held is None:
            cfg = self.config
            if (
                len(self._active) >= cfg.max_subscriptions + reserve
                or self._active_bytes + len(prefix) > cfg.max_subscription_bytes + reserve * 64
            ):
                return False
            self._active_bytes += len(prefix)
            held = 0
        self._active[prefix] = held + 1
        self.counters["subscriptions_active"] = len(self._active)
        return True

    def _release(self, prefix: bytes) -> None:
        held = self._active.get(prefix)
        if held is None:
            return
        if held <= 1:
            del self._active[prefix]
            self._active_bytes -= len(prefix)
        else:
            self._active[prefix] = held - 1
        self.counters["subscriptions_active"] = len(self._active)

    def _warn(self, event: str, **fields: object) -> None:
        suppressed = self._log_limit.should_log(event)
        if suppressed is not None:
            log.warning(event, suppressed=suppressed, **fields)


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
        self.bound = asyncio.Event()
        self.counters: dict[str, float] = {}
        self._forwarder: _Forwarder | None = None

    @property
    def probes_answered(self) -> int:
        return self._forwarder.counters["probes_answered"] if self._forwarder else 0

    def _bind(self) -> tuple[zmq.Socket, zmq.Socket, zmq.Socket, int]:
        """Bind both endpoints through the one endpoint check; returns the sockets and how many use CURVE."""
        xsub = self._ctx.socket(zmq.XSUB)
        xpub = self._ctx.socket(zmq.XPUB)
        control = self._ctx.socket(zmq.PAIR)
        curve_users = 0
        try:
            xpub.setsockopt(zmq.XPUB_MANUAL, 1)
            for sock, opt in ((xsub, zmq.RCVHWM), (xpub, zmq.SNDHWM)):
                sock.setsockopt(opt, self.config.proxy_hwm)
                sock.setsockopt(zmq.LINGER, 0)
                apply_limits(sock, self.config)
            # subscribers send nothing but subscriptions: libzmq drops a connection that sends a longer frame
            xpub.setsockopt(zmq.MAXMSGSIZE, self.config.max_topic_bytes + len(READY_PREFIX) + 64)
            for sock, ep, where in ((xsub, self.pub_endpoint, "bus.pub"), (xpub, self.sub_endpoint, "bus.sub")):
                curve_users += bind_server(sock, ep, self.config, where=where)
            xsub.bind(self._inproc)
            control.bind(self._control_ep)
            xsub.send(b"\x01")  # subscribe to everything: publishers forward all, the proxy filters
        except BaseException:
            for s in (xsub, xpub, control):
                s.close(linger=0)
            for _ in range(curve_users):
                release(self._ctx)
            raise
        return xsub, xpub, control, curve_users

    def _clients_may_be_waiting(self) -> bool:
        """Whether clients of an earlier proxy may be reconnecting to these endpoints: an ipc:// socket file is
        already there, or an endpoint is tcp:// (where a first start cannot be told from a restart)."""
        return any(
            ep.startswith("tcp://") or (ep.startswith("ipc://") and os.path.exists(ep[len("ipc://") :]))
            for ep in (self.pub_endpoint, self.sub_endpoint)
        )

    async def run(self) -> None:
        if any(self.config.endpoint(n).startswith("ipc://") for n in ("pub", "sub")):
            ensure_runtime_dir(self.config)
        grace_s = RESUBSCRIBE_GRACE_S if self._clients_may_be_waiting() else 0.0
        xsub, xpub, control, curve_users = self._bind()  # on the loop: the ZAP handler lives here
        self._forwarder = fwd = _Forwarder(self.config, xsub, xpub, control, grace_s)
        thread = threading.Thread(target=fwd.run, name="bus-proxy", daemon=True)
        thread.start()  # from here on the thread owns the three sockets
        ctl = self._actx.socket(zmq.PAIR)
        ctl.connect(self._control_ep)
        stats_out = self._actx.socket(zmq.PUB)
        stats_out.setsockopt(zmq.LINGER, 0)
        stats_out.connect(self._inproc)
        log.info("bus proxy up", pub=self.pub_endpoint, sub=self.sub_endpoint, roles=fwd.roles)
        self.bound.set()
        try:
            await self._publish_stats(stats_out, fwd, thread)
        finally:
            # Nothing awaited in here: a second SIGTERM cancelled an await and skipped the closes, and the
            # context's finaliser then blocked in zmq_ctx_term for ever (a proxy outliving its launcher).
            with contextlib.suppress(zmq.ZMQError):
                zmq.Socket.shadow(ctl.underlying).send(b"TERMINATE", zmq.NOBLOCK)
            thread.join(5.0)  # the forwarder returns at once on TERMINATE
            ctl.close(linger=0)
            stats_out.close(linger=0)
            for s in (xsub, xpub, control):
                s.close(linger=0)
            for _ in range(curve_users):
                release(self._ctx)
            self._ctx.term()
            log.info("bus proxy stopped", **{k: v for k, v in fwd.counters.items() if k.startswith("dropped")})

    async def _publish_stats(self, out: zmq.asyncio.Socket, fwd: _Forwarder, thread: threading.Thread) -> None:
        started = time.monotonic()
        seq = 0
        proc = psutil.Process()  # the process the proxy runs in (its own under `perception up`)
        proc.cpu_percent(None)  # the first call primes the counter
        while True:
            if not thread.is_alive():
                raise RuntimeError("bus proxy forwarding thread died")
            self.counters = {k: float(v) for k, v in list(fwd.counters.items())}
            self.counters["uptime_s"] = round(time.monotonic() - started, 3)
            self.counters["cpu_pct"] = round(proc.cpu_percent(None), 1)  # libzmq's I/O threads included
            self.counters["rss_mb"] = round(proc.memory_info().rss / 1e6, 1)
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

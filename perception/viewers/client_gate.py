"""A door in front of the Foxglove WebSocket server: at most `max_clients` at once, each bounded in bytes.

foxglove-sdk's server takes every connection (300 clients that never read were all accepted) and has no
hook to refuse one. So the SDK serves on an ephemeral loopback port and this gate listens where clients
connect: it counts connections, relays each accepted one byte for byte to the SDK (the WebSocket
handshake and frames pass through untouched), and answers one over the cap with an HTTP
`503 Service Unavailable` whose body says why and a `Retry-After`, then closes it.

A client that never reads is bounded twice: the relay toward it stops reading from the SDK once
`buffer_bytes` wait to be sent (backpressure, no queue grows here), and the SDK then queues at most
`--backlog` messages for it, dropping the oldest. The relay runs on its own thread and event loop, so
bytes copied for viewers never delay the bridge's bus handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass

from bus.logs import RateLimited, get_logger

CHUNK = 64 * 1024  # bytes read at a time from either side
REQUEST_HEAD_MAX = 16 * 1024  # bytes of a refused client's HTTP request read (so it gets the reply)
REFUSE_READ_S = 2.0  # how long a refused client has to send its request
REFUSING_MAX = 64  # refusals in progress; beyond, a connection is closed without a reply
RETRY_AFTER_S = 5

log = get_logger("viewers.client_gate")


@dataclass
class GateStats:
    accepted: int = 0
    refused: int = 0
    active: int = 0
    max_buffered: int = 0  # most bytes ever waiting to be sent to one client
    refusing: int = 0  # refusals in progress


class ClientGate:
    def __init__(self, host: str, port: int, upstream_port: int, max_clients: int, buffer_bytes: int = 256 * 1024):
        if max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, got {max_clients}")
        self.host, self.port, self.upstream_port = host, port, upstream_port
        self.max_clients, self.buffer_bytes = max_clients, buffer_bytes
        self.stats = GateStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._logs = RateLimited(1.0)

    # -- lifecycle (from the bridge's thread) -----------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> int:
        """Listen (OSError if the port is taken); returns the port bound."""
        self._thread = threading.Thread(target=self._run, name="foxglove-gate", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError(f"the Foxglove client gate did not start in {timeout_s:g} s")
        if self._error is not None:
            raise self._error
        return self.port

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # -- the gate's own loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._client, self.host, self.port))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # handed to start()'s caller
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.stats.active >= self.max_clients:
            await self._refuse(reader, writer)
            return
        self.stats.active += 1
        self.stats.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError as exc:
            self.stats.active -= 1
            log.warning("foxglove server unreachable", error=str(exc))
            writer.close()
            return
        writer.transport.set_write_buffer_limits(high=self.buffer_bytes)
        up_writer.transport.set_write_buffer_limits(high=self.buffer_bytes)
        try:
            to_client = asyncio.create_task(self._pipe(up_reader, writer, track=True))
            to_server = asyncio.create_task(self._pipe(reader, up_writer, track=False))
            await asyncio.wait({to_client, to_server}, return_when=asyncio.FIRST_COMPLETED)
            for task in (to_client, to_server):
                task.cancel()
            await asyncio.gather(to_client, to_server, return_exceptions=True)
        finally:
            self.stats.active -= 1
            for w in (writer, up_writer):
                w.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, track: bool) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(CHUNK):
                dst.write(data)
                if track:
                    buffered = dst.transport.get_write_buffer_size()
                    if buffered > self.stats.max_buffered:
                        self.stats.max_buffered = buffered
                await dst.drain()  # waits while more than buffer_bytes are unsent: no reading meanwhile

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.refused += 1
        suppressed = self._logs.should_log("refused")
        if suppressed is not None:
            log.warning("foxglove client refused: too many", max_clients=self.max_clients, suppressed=suppressed)
        if self.stats.refusing >= REFUSING_MAX:  # a connection flood: no time or reply for each
            writer.close()
            return
        self.stats.refusing += 1
        try:
            await self._reply_refused(reader, writer)
        finally:
            self.stats.refusing -= 1
            writer.close()

    async def _reply_refused(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reason = (
            f"too many Foxglove clients: this bridge serves at most {self.max_clients} at once "
            f"(perception foxglove --max-clients); close another connection or retry in {RETRY_AFTER_S} s\n"
        ).encode()
        with contextlib.suppress(OSError, TimeoutError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            async with asyncio.timeout(REFUSE_READ_S):  # read the request head, so the reply is not a reset
                head = b""
                while b"\r\n\r\n" not in head and len(head) < REQUEST_HEAD_MAX:
                    chunk = await reader.read(REQUEST_HEAD_MAX - len(head))
                    if not chunk:
                        break
                    head += chunk
        with contextlib.suppress(OSError, TimeoutError):
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                + f"Retry-After: {RETRY_AFTER_S}\r\nContent-Length: {len(reason)}\r\nConnection: close\r\n\r\n".encode()
                + reason
            )
            await asyncio.wait_for(writer.drain(), REFUSE_READ_S)

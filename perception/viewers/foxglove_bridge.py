"""`perception foxglove`: the bus, live, as a Foxglove WebSocket server (foxglove-sdk).

Open the Foxglove app, "Open connection", `ws://127.0.0.1:8765` (Foxglove's default), and load
docs/foxglove-layout.json for frames, captions, events, watch scores and per-node stats side by side. The
channels and their schemas are in perception/viewers/foxglove_sink.py.

What a viewer costs the pipeline: nothing it can feel. The bridge is a bus subscriber like a skill (frames
on the `latest` policy), compresses at most `max_fps` frames per camera and only while a client is
subscribed to that camera's image channel, on a worker thread; each WebSocket client has its own bounded
queue in the SDK (`message_backlog_size` messages, the oldest dropped when a client reads too slowly), so a
slow or stalled client loses its own frames and never delays another client, the bridge or the bus.

The server binds to loopback unless told otherwise: the Foxglove protocol has no authentication, so a
non-loopback host is refused unless `allow_remote` says the network in between is trusted. Clients connect
through a gate (perception/viewers/client_gate.py): at most `max_clients` at once (one more gets an HTTP
503 saying why), each relayed to the SDK's server on a loopback port with a bounded buffer.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, ClassVar

from bus.config import is_loopback_endpoint
from bus.security import SecurityConfigError
from perception.config import AppConfig
from perception.viewers import defaults
from perception.viewers.client_gate import ClientGate
from perception.viewers.feed import DEFAULT_MAX_FPS, Feed
from perception.viewers.foxglove_sink import FoxgloveSink
from perception.viewers.live import LiveViewer
from perception.viewers.texts import WatchSet

DEFAULT_HOST = defaults.FOXGLOVE_HOST
DEFAULT_PORT = defaults.FOXGLOVE_PORT
DEFAULT_BACKLOG = defaults.FOXGLOVE_BACKLOG
DEFAULT_MAX_CLIENTS = defaults.FOXGLOVE_MAX_CLIENTS


def check_host(host: str, allow_remote: bool) -> None:
    if not allow_remote and not is_loopback_endpoint(f"tcp://{host}:0"):
        raise SecurityConfigError(
            f"--host {host}: the Foxglove WebSocket protocol has no authentication; refusing to serve the "
            "bus on a non-loopback address (use an SSH tunnel to 127.0.0.1, or --allow-remote on a trusted network)"
        )


class _Listener:
    """Counts WebSocket subscriptions (called from the SDK's own threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.subscriptions: set[tuple[int, int]] = set()
        self.clients: Counter[int] = Counter()

    def on_subscribe(self, client: Any, channel: Any) -> None:
        with self.lock:
            self.subscriptions.add((client.id, channel.id))
            self.clients[client.id] += 1

    def on_unsubscribe(self, client: Any, channel: Any) -> None:
        with self.lock:
            if (client.id, channel.id) in self.subscriptions:
                self.subscriptions.discard((client.id, channel.id))
                self.clients[client.id] -= 1
                if self.clients[client.id] <= 0:
                    del self.clients[client.id]


class FoxgloveBridge(LiveViewer):
    name: ClassVar[str] = "foxglove"

    def __init__(
        self,
        config: AppConfig,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        max_fps: float = DEFAULT_MAX_FPS,
        backlog: int = DEFAULT_BACKLOG,
        allow_remote: bool = False,
        max_clients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        check_host(host, allow_remote)
        super().__init__(config)
        self.host, self.port, self.max_fps, self.backlog = host, port, max_fps, backlog
        self.max_clients = max_clients
        self.server: Any = None
        self.gate: ClientGate | None = None
        self.listener = _Listener()
        self.url = ""

    async def setup(self) -> None:
        import foxglove

        context = foxglove.Context()
        self.server = foxglove.start_server(  # reached only through the gate
            name="vljepa-perception",
            host="127.0.0.1",
            port=0,
            context=context,
            server_listener=self.listener,
            message_backlog_size=self.backlog,
        )
        self.gate = ClientGate(self.host, self.port, self.server.port, self.max_clients)
        self.port = self.gate.start()
        self.url = f"ws://{self.host}:{self.port}"
        sink = FoxgloveSink(context, only_watched_frames=True)
        # the configured cameras' and nodes' channels exist from the start: a client sees every topic on
        # connecting (a layout's panels find theirs), and subscribes to channels it was told of at once
        # (foxglove-sdk refuses a subscription that arrives just after a new channel's advertisement)
        for cam in self.config.pipeline.cameras:
            for kind in ("image", "caption", "event", "truth", "segment", "watch"):
                sink.channel(kind, cam.name)
        for node in ("bus", *self.config.pipeline.nodes, self.bus_name):
            sink.channel("stats", node)
        watches = WatchSet(self.config.pipeline.events.watch)
        self.feed = Feed(sink, max_fps=self.max_fps, watches=watches, counters=self.counters)
        self.log.info(
            "foxglove bridge listening",
            url=self.url,
            max_fps=self.max_fps,
            backlog=self.backlog,
            max_clients=self.max_clients,
        )

    def extra_stats(self) -> dict[str, float]:
        with self.listener.lock:
            out = {
                "clients": float(len(self.listener.clients)),
                "subscriptions": float(len(self.listener.subscriptions)),
            }
        if self.gate is not None:
            g = self.gate.stats
            out.update(
                {
                    "connections": float(g.active),
                    "connections_refused": float(g.refused),
                    "client_buffer_max_bytes": float(g.max_buffered),
                }
            )
        return out

    async def teardown(self) -> None:
        await super().teardown()
        if self.gate is not None:
            self.gate.stop()
            self.gate = None
        if self.server is not None:
            self.server.stop()
            self.server = None

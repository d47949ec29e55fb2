"""The skill SDK's world client: `self.world` is perception's one `WorldClient` (now, history, search, ask,
watch, unwatch, watches and the memory queries), with timeouts; see perception/world_client.py."""

from __future__ import annotations

from perception.world_client import RpcError, WorldClient, WorldUnavailable

__all__ = ["RpcError", "WorldClient", "WorldUnavailable"]

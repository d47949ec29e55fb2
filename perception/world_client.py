"""The one client of the world node's RPC service: its queries, its runtime watches and its memory store.

Skills (skills/world.py re-exports it), `perception mcp`, the `perception now|history|...|ask` commands and
the events node all call the world through this class, so a method the world grows is added here once.

`call(method, params)` is the raw RPC: params whose value is None are left out, the result is the world's
answer as it sent it. The typed methods below name the parameters; they return the answer's map, except
`history`, `search` and `watches`, which return the list the map holds (`items`, `results`, `watches`).
No answer within `timeout` seconds per attempt raises `WorldUnavailable` (a TimeoutError); an error reply
raises `bus.rpc.RpcError` with the world node's code and message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bus.config import BusConfig
from bus.rpc import RpcClient, RpcError, RpcTimeout


class WorldUnavailable(TimeoutError):
    """The world node did not answer in time (is `perception up` running on this bus?)."""


class WorldClient:
    """`await world.now()`, `history(...)`, `search(text)`, `ask(question, choices)`, `watch(phrase)`,
    `unwatch(id)`, `watches()` and the memory queries (`recall`, `last_seen`, `at`, `spans`, `segment`,
    `memory`). Every call takes `timeout` (seconds per attempt, default `self.timeout`)."""

    def __init__(self, config: BusConfig, *, timeout: float = 2.0, retries: int = 1) -> None:
        self.config = config
        self.endpoint = config.endpoint("rpc")
        self.timeout = timeout
        self.retries = retries
        self._rpc: RpcClient | None = None

    @property
    def rpc(self) -> RpcClient:
        if self._rpc is None:  # made on first use, on the running loop
            self._rpc = RpcClient(self.config, timeout=self.timeout, retries=self.retries)
        return self._rpc

    async def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """The world's answer to `method` as sent; None-valued params are left out."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            return await self.rpc.call(method, params, timeout=timeout)
        except RpcTimeout as exc:
            raise WorldUnavailable(f"world node: {exc}") from exc

    # -- the live world -------------------------------------------------------------------------------

    async def now(self, camera: str | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        """Per camera: current segment, last closed segment, latest caption, active watch labels."""
        return await self.call("now", {"camera": camera}, timeout=timeout)

    async def history(
        self,
        camera: str | None = None,
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
        kinds: Iterable[str] | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """Events and captions in a capture-time range, oldest first."""
        res = await self.call(
            "history",
            {
                "camera": camera,
                "since_ns": since_ns,
                "until_ns": until_ns,
                "kinds": list(kinds) if kinds else None,
                "limit": limit,
            },
            timeout=timeout,
        )
        return res["items"]

    async def search(
        self, text: str, camera: str | None = None, *, k: int = 5, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Segments ranked by cosine(text S_Y, segment mean S^_Y), best first, each with `score`."""
        res = await self.call("search", {"text": text, "camera": camera, "k": k}, timeout=timeout)
        return res["results"]

    async def ask(
        self,
        question: str,
        choices: Iterable[str] | None = None,
        camera: str | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Discriminative VQA on the camera's latest window (`answer` + `scores`), or decoded `text`."""
        params = {"question": question, "choices": list(choices) if choices else None, "camera": camera}
        return await self.call("ask", params, timeout=timeout)

    # -- runtime watches ------------------------------------------------------------------------------

    async def watch(
        self,
        phrase: str,
        camera: str | None = None,
        *,
        enter: float | None = None,
        leave: float | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Start watching for `phrase`; the map holds the new watch's `id` (w-...) and its thresholds."""
        params = {"phrase": phrase, "camera": camera, "enter": enter, "leave": leave}
        return await self.call("watch", params, timeout=timeout)

    async def unwatch(self, watch_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Stop a runtime watch; `removed` is false when no such watch existed."""
        return await self.call("unwatch", {"id": watch_id}, timeout=timeout)

    async def watches(self, camera: str | None = None, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """The runtime watches the world has now (the list its `watches/` broadcast carries)."""
        res = await self.call("watches", {"camera": camera}, timeout=timeout)
        return res["watches"]

    # -- the memory store (answered when the world runs with a store) ---------------------------------

    async def recall(self, text: str, *, timeout: float | None = None, **filters: Any) -> dict[str, Any]:
        """Stored windows nearest `text`; filters: since_ns, until_ns, near, robot, camera, limit, min_score."""
        return await self.call("recall", {"text": text, **filters}, timeout=timeout)

    async def last_seen(self, text: str, *, timeout: float | None = None, **filters: Any) -> dict[str, Any]:
        """The newest stored window matching `text` (same filters as `recall`)."""
        return await self.call("last_seen", {"text": text, **filters}, timeout=timeout)

    async def at(self, t_ns: int, *, timeout: float | None = None, **filters: Any) -> dict[str, Any]:
        """What was stored at capture time `t_ns` (filters as `recall`, `text` optional)."""
        return await self.call("at", {"t_ns": t_ns, **filters}, timeout=timeout)

    async def spans(self, *, timeout: float | None = None, **filters: Any) -> dict[str, Any]:
        """Watch spans (filters: watch, since_ns, until_ns, robot, camera, limit)."""
        return await self.call("spans", filters, timeout=timeout)

    async def segment(self, segment_id: int, *, timeout: float | None = None) -> dict[str, Any]:
        """One stored segment by its id."""
        return await self.call("segment", {"id": segment_id}, timeout=timeout)

    async def memory(self, *, timeout: float | None = None) -> dict[str, Any]:
        """What the store holds (counts, time range)."""
        return await self.call("memory", {}, timeout=timeout)

    def close(self) -> None:
        if self._rpc is not None:
            self._rpc.close()
            self._rpc = None

    async def __aenter__(self) -> WorldClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


__all__ = ["RpcError", "WorldClient", "WorldUnavailable"]

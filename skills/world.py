"""Typed access to the world node's queries (now, history, search, ask) over the bus RPC, with timeouts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bus.config import BusConfig
from bus.rpc import RpcClient, RpcError, RpcTimeout


class WorldUnavailable(TimeoutError):
    """The world node did not answer in time (is `perception up` running on this bus?)."""


class WorldClient:
    """`await world.now()`, `history(...)`, `search(text)`, `ask(question, choices)`; results are dicts.

    Every call takes `timeout` (seconds per attempt, default `self.timeout`); no answer raises
    `WorldUnavailable`, an error reply raises `bus.rpc.RpcError` with the world node's code and message.
    """

    def __init__(self, config: BusConfig, *, timeout: float = 2.0, retries: int = 1) -> None:
        self.timeout = timeout
        self._rpc = RpcClient(config, timeout=timeout, retries=retries)

    async def _call(self, method: str, params: dict[str, Any], timeout: float | None) -> Any:
        params = {k: v for k, v in params.items() if v is not None}
        try:
            return await self._rpc.call(method, params, timeout=timeout)
        except RpcTimeout as exc:
            raise WorldUnavailable(f"world node: {exc}") from exc

    async def now(self, camera: str | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        """Per camera: current segment, last closed segment, latest caption, active watch labels."""
        return await self._call("now", {"camera": camera}, timeout)

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
        res = await self._call(
            "history",
            {
                "camera": camera,
                "since_ns": since_ns,
                "until_ns": until_ns,
                "kinds": list(kinds) if kinds else None,
                "limit": limit,
            },
            timeout,
        )
        return res["items"]

    async def search(
        self, text: str, camera: str | None = None, *, k: int = 5, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Segments ranked by cosine(text S_Y, segment mean S^_Y), best first, each with `score`."""
        res = await self._call("search", {"text": text, "camera": camera, "k": k}, timeout)
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
        return await self._call(
            "ask", {"question": question, "choices": list(choices) if choices else None, "camera": camera}, timeout
        )

    def close(self) -> None:
        self._rpc.close()


__all__ = ["RpcError", "WorldClient", "WorldUnavailable"]

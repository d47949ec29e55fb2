"""Query texts embedded in this process (no pipeline running: `perception mcp --store`, `perception memory`):
the configured model's text encoder, loaded on first use, checked against the store's D."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from perception.memory.queries import QueryError


class LocalEmbedder:
    def __init__(self, model_section: Any, dim: int) -> None:
        self._section = model_section
        self._dim = dim
        self._model: Any = None
        self._lock = asyncio.Lock()

    async def __call__(self, text: str) -> np.ndarray:
        async with self._lock:
            if self._model is None:
                from perception.nodes.models import load_model

                self._model, _ = await asyncio.to_thread(load_model, self._section)
        emb = await asyncio.to_thread(lambda: self._model.embed_text([text], cache=False).float().cpu().numpy()[0])
        if emb.shape[0] != self._dim:
            raise QueryError(
                "model_mismatch",
                f"the configured model embeds to D={emb.shape[0]}, the store holds D={self._dim}: "
                "pass the --config of the model that wrote it",
            )
        return emb

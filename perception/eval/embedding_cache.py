"""Stream embeddings cached per model, so a sweep of segmenter settings and decode rates costs decodes only.

Embedding 72 one-minute streams is most of an evaluation's time; the segmenters and the decoder read only
the (T, D) embeddings and their times. A cache entry is keyed by the model's fingerprint (a hash of every
parameter and buffer, so a retrained or re-imported checkpoint never reads another's entries) and by what
makes the stream (split, seed, seconds, step, window). Entries are plain .npz read with
`allow_pickle=False`; one that does not match the shape it must have is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from bus.logs import get_logger

log = get_logger("eval.cache")

MAX_ENTRY_BYTES = 256 * 2**20  # a one-hour stream at 4 Hz of 1536-d float64 is 166 MB; more is not ours


def model_fingerprint(model: torch.nn.Module) -> str:
    """blake2b over every parameter's and buffer's name, dtype, shape and bytes (CPU copies, in order)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class EmbeddingCache:
    """`get(key)` -> (embs, times) or None; `put(key, embs, times)`. Keys are dicts of plain values."""

    def __init__(self, directory: str | Path, fingerprint: str) -> None:
        self.dir = Path(directory) / fingerprint
        self.hits = self.misses = 0

    def _path(self, key: dict) -> Path:
        digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=12).hexdigest()
        return self.dir / f"{digest}.npz"

    def get(self, key: dict) -> tuple[np.ndarray, np.ndarray] | None:
        path = self._path(key)
        try:
            if path.stat().st_size > MAX_ENTRY_BYTES:
                raise ValueError(f"{path.stat().st_size} bytes")
            with np.load(path, allow_pickle=False) as z:
                embs, times = z["embs"], z["times"]
            if embs.ndim != 2 or times.shape != (embs.shape[0],) or embs.dtype != np.float64:
                raise ValueError(f"shapes {embs.shape} / {times.shape}, dtype {embs.dtype}")
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("cache entry unreadable, recomputing", path=str(path), error=str(exc)[:200])
            self.misses += 1
            return None
        self.hits += 1
        return embs, times

    def put(self, key: dict, embs: np.ndarray, times: np.ndarray) -> None:
        """Written to a temporary file in the same directory and renamed: a killed run leaves no half entry."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, embs=np.asarray(embs, np.float64), times=np.asarray(times, np.float64))
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

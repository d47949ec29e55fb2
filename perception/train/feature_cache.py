"""The frozen X-encoder's features on disk, one safetensors file per data shard, so later epochs skip it.

The X-encoder is frozen in the sharded recipe (the paper freezes V-JEPA 2), so S_V of a clip is a fixed
function of its bytes: the first epoch computes it live and keeps it here, every later epoch reads it
instead of decoding the video and running the encoder. The bits stored are the bits the live step used
(same dtype, no re-encoding), so a cached epoch trains on exactly what a live one would.

Layout: ROOT/<fingerprint>/<shard stem>.safetensors, tensors keyed by sample key. The fingerprint hashes
the encoder's weights and input geometry: another encoder or another frame size never reads stale
features. A shard's file is written (atomically) once all its samples have been encoded; data-loader
workers look a sample up by (shard, key) and fall back to decoding when its shard has no file yet.
A vitl clip (16 frames at 256 px, 2,048 tokens x 1,024) is 4 MiB in bf16: size the disk before enabling it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from bus.logs import get_logger

log = get_logger("train.feature_cache")


def encoder_fingerprint(encoder: torch.nn.Module, geometry: dict) -> str:
    """sha256 over every tensor of the encoder (names, dtypes, shapes, bytes) and the input geometry."""
    h = hashlib.sha256(json.dumps(geometry, sort_keys=True).encode())
    for name, t in sorted(encoder.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


class FeatureCache:
    """Reader (data-loader workers) and writer (the training process) of one fingerprint's directory."""

    OPEN_FILES = 4  # shard files a worker keeps open (its shuffle buffer spans about two shards)

    def __init__(self, root: str | Path, fingerprint: str, shard_sizes: dict[str, int], max_pending: int) -> None:
        self.dir = Path(root) / fingerprint
        self.sizes = shard_sizes
        self.max_pending = max_pending
        self._pending: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        self._open: OrderedDict[str, object] = OrderedDict()

    def path(self, shard: str) -> Path:
        return self.dir / f"{Path(shard).stem}.safetensors"

    # ---------------------------------------------------------------------------- read (workers)
    def lookup(self, shard: str, key: str) -> torch.Tensor | None:
        """S_V [N, Dv] of one sample, or None when its shard is not cached (yet)."""
        handle = self._open.get(shard)
        if handle is None:
            path = self.path(shard)
            if not path.is_file():
                return None
            handle = safe_open(str(path), framework="pt")
            self._open[shard] = handle
            while len(self._open) > self.OPEN_FILES:
                self._open.popitem(last=False)
        self._open.move_to_end(shard)
        return handle.get_tensor(key) if key in handle.keys() else None

    # ---------------------------------------------------------------------------- write (trainer)
    def add(self, shard: str, key: str, features: torch.Tensor) -> None:
        """Keep one live sample's S_V; write the shard's file when it is complete. Shards that can no longer
        complete (a resumed run skipped some of their samples) are dropped oldest first past max_pending."""
        if self.path(shard).is_file():
            return
        rows = self._pending.setdefault(shard, {})
        rows[key] = features.detach().to("cpu", copy=True).contiguous()
        self._pending.move_to_end(shard)
        if len(rows) == self.sizes.get(shard, -1):
            self._write(shard, self._pending.pop(shard))
        while len(self._pending) > self.max_pending:
            dropped, rows = self._pending.popitem(last=False)
            log.warning("feature_cache.shard_dropped", shard=dropped, held=len(rows), of=self.sizes.get(dropped))

    def _write(self, shard: str, rows: dict[str, torch.Tensor]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{Path(shard).stem}.{os.getpid()}.tmp"
        save_file(rows, str(tmp))
        os.replace(tmp, self.path(shard))  # another rank writing the same shard writes the same bits
        log.info("feature_cache.shard_written", shard=shard, samples=len(rows), dir=str(self.dir))

    @property
    def pending(self) -> int:
        return sum(len(r) for r in self._pending.values())

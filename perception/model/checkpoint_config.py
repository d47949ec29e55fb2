"""A checkpoint directory's config.json, read as data: bounded in size, validated, and naming no package to
import (perception/model/config.py `check_data_sources`). Torch-free, so the launcher checks a checkpoint
before any process loads it."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from perception.model.config import UntrustedSourceError, VLJepaConfig, check_data_sources

CHECKPOINT_FORMAT = 1
CONFIG_FILE = "config.json"
# a real config.json is a few KiB (the vjepa2-vitl preset's, with three hf_config dicts: 5 KiB)
MAX_CONFIG_BYTES = 1024 * 1024
# a safetensors header lists every tensor (the tiny checkpoint's: 9 KiB; a 70B LLM's: ~100 KiB)
MAX_WEIGHTS_HEADER_BYTES = 16 * 1024 * 1024
SAFETENSORS_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


class CheckpointError(ValueError):
    """A checkpoint directory that is missing files, whose config.json is unreadable or names what a data
    file may not, or whose tensors do not match its config."""


def read_checkpoint_config(directory: str | Path) -> VLJepaConfig:
    """The VLJepaConfig a checkpoint's config.json describes, or a one-line CheckpointError."""
    return read_checkpoint_meta(directory)[0]


def read_checkpoint_meta(directory: str | Path) -> tuple[VLJepaConfig, dict[str, str]]:
    """(the model config, the `external` map: state-dict prefix -> source) of a checkpoint's config.json,
    or a one-line CheckpointError."""
    d = Path(directory)
    path = d / CONFIG_FILE
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise CheckpointError(f"{d} is not a VL-JEPA checkpoint: expected {CONFIG_FILE}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a VL-JEPA config")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: must hold a JSON object")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{d}: checkpoint format {str(meta.get('format'))[:40]!r}, expected {CHECKPOINT_FORMAT}")
    if not isinstance(meta.get("model"), dict):
        raise CheckpointError(f"{path}: `model` must be an object")
    try:
        cfg = VLJepaConfig.from_dict(meta["model"])
        check_data_sources(cfg, str(path))
    except UntrustedSourceError as exc:
        raise CheckpointError(str(exc)) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: invalid model config: {str(exc)[:300]}") from None
    external = meta.get("external", {})
    if not isinstance(external, dict) or not all(isinstance(v, str) for v in external.values()):
        raise CheckpointError(f"{path}: `external` must map state-dict prefixes to sources")
    return cfg, dict(external)


def check_weights_file(path: str | Path) -> int:
    """Check a .safetensors file's header against the file before any tensor is made from it: the header
    bounded, every tensor's dtype known, its shape's bytes equal to its declared extent, every extent inside
    the file. Returns the tensor count; a one-line CheckpointError says what is wrong. Nothing is allocated
    from what the header declares (a shape of 2**40 x 2**40 is refused by arithmetic, not by a MemoryError)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: {size} bytes, too short for a safetensors file")
            n = int.from_bytes(head, "little")
            if n > min(MAX_WEIGHTS_HEADER_BYTES, size - 8):
                raise CheckpointError(
                    f"{path}: declares a {n}-byte header (at most {MAX_WEIGHTS_HEADER_BYTES}, and within the file)"
                )
            raw = f.read(n)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):
        raise CheckpointError(f"{path}: the safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    data = size - 8 - n
    extents = []
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor {str(name)[:80]!r}"
        if not isinstance(spec, dict):
            raise CheckpointError(f"{where}: not an object")
        dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if dtype not in SAFETENSORS_ITEMSIZE:
            raise CheckpointError(f"{where}: dtype {str(dtype)[:20]!r} is not a safetensors dtype")
        if not isinstance(shape, list) or len(shape) > 16 or not all(_count(d) for d in shape):
            raise CheckpointError(f"{where}: shape {str(shape)[:80]} is not a list of at most 16 sizes")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_count(o) for o in offsets)):
            raise CheckpointError(f"{where}: data_offsets {str(offsets)[:80]} is not [begin, end]")
        begin, end = offsets
        nbytes = math.prod(shape) * SAFETENSORS_ITEMSIZE[dtype]  # Python ints: no overflow, nothing allocated
        if not begin <= end <= data or end - begin != nbytes:
            raise CheckpointError(
                f"{where}: {dtype}{str(shape)[:60]} is {nbytes} bytes but its data_offsets [{begin}, {end}] "
                f"{'leave the file' if end > data else 'differ'} (the file holds {data} bytes of data)"
            )
        extents.append((begin, end))
    extents.sort()
    for (_, end_a), (begin_b, _) in zip(extents, extents[1:], strict=False):
        if begin_b < end_a:
            raise CheckpointError(f"{path}: two tensors' data overlap")
    return len(extents)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62

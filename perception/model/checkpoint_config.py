"""A checkpoint directory's config.json, read as data: bounded in size, validated, and naming no package to
import (perception/model/config.py `check_data_sources`). Torch-free, so the launcher checks a checkpoint
before any process loads it."""

from __future__ import annotations

import json
from pathlib import Path

from perception.model.config import UntrustedSourceError, VLJepaConfig, check_data_sources

CHECKPOINT_FORMAT = 1
CONFIG_FILE = "config.json"
# a real config.json is a few KiB (the vjepa2-vitl preset's, with three hf_config dicts: 5 KiB)
MAX_CONFIG_BYTES = 1024 * 1024


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

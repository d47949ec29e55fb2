"""A TokenVLM checkpoint directory, checked without torch: the launcher's preflight and `TokenVLM.load` agree.

    OUT/vlm.safetensors   the trainable tensors only
    OUT/vlm.json          {"format", "dims", "source": VL-JEPA checkpoint relative to OUT, "source_sha256", ...}

The frozen X-encoder and word table are reloaded from `source`; its weights' sha256 must match, so a VLM
is never paired with visual features it was not trained on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

VLM_WEIGHTS = "vlm.safetensors"
VLM_CONFIG = "vlm.json"
VLM_FORMAT = "token-vlm/1"
SOURCE_WEIGHTS = "model.safetensors"  # the source VL-JEPA checkpoint's weights (vljepa.WEIGHTS_FILE)
RETRAIN_HINT = "train one with `perception train --preset tiny-vlm`"


class VLMCheckpointProblem(ValueError):
    """The directory is not a usable TokenVLM checkpoint; the message says what is wrong."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_vlm_checkpoint(directory: str | Path) -> tuple[dict, Path]:
    """(vlm.json contents, the source VL-JEPA directory), or VLMCheckpointProblem."""
    d = Path(directory)
    missing = [f for f in (VLM_CONFIG, VLM_WEIGHTS) if not (d / f).is_file()]
    if missing:
        raise VLMCheckpointProblem(
            f"{d} is not a TokenVLM checkpoint: {' and '.join(missing)} missing ({RETRAIN_HINT})"
        )
    try:
        meta = json.loads((d / VLM_CONFIG).read_text())
        fmt, source, digest = meta.get("format"), meta["source"], meta["source_sha256"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VLMCheckpointProblem(f"{d}: unreadable {VLM_CONFIG} ({type(exc).__name__}: {exc})") from exc
    if fmt != VLM_FORMAT:
        raise VLMCheckpointProblem(f"{d}: checkpoint format {fmt!r}, expected {VLM_FORMAT!r}")
    src = (d / source).resolve()
    if not (src / SOURCE_WEIGHTS).is_file():
        raise VLMCheckpointProblem(f"{d}: its source VL-JEPA checkpoint {src} is missing")
    if file_sha256(src / SOURCE_WEIGHTS) != digest:
        raise VLMCheckpointProblem(
            f"{d}: the VL-JEPA checkpoint at {src} is not the one this VLM was trained on (sha256 differs); "
            f"retrain it ({RETRAIN_HINT})"
        )
    return meta, src

"""Parameter counts per part for a preset, built on the meta device (no weights, no memory).

`python -m perception.model.params` prints the markdown table used in docs/model.md.
"""

from __future__ import annotations

import sys

import torch

from perception.model.config import preset_config
from perception.model.vljepa import VLJepa

PARTS = ("x_encoder", "predictor", "y_encoder", "y_decoder", "all")


def count_parameters(preset: str) -> dict[str, dict[str, int]]:
    """{part: {"total", "trainable"}}: the preset's architecture with its configured frozen/trainable split.
    Pretrained parts are built from the layouts recorded in the preset (no weight files are read)."""
    cfg = preset_config(preset)
    with torch.device("meta"):
        model = VLJepa(cfg, load_weights=False)
    return model.parameter_counts()


def stored_bytes(preset: str) -> int:
    """fp32 bytes a checkpoint of this preset stores (everything but frozen pretrained parts)."""
    cfg = preset_config(preset)
    with torch.device("meta"):
        model = VLJepa(cfg, load_weights=False)
    ext = tuple(model.external_parts())
    return sum(v.numel() * 4 for k, v in model.state_dict().items() if not k.startswith(ext))


def markdown_table(presets: tuple[str, ...] = ("tiny", "vjepa2-vitl")) -> str:
    lines = ["| preset | part | total | trainable |", "|---|---|---:|---:|"]
    for preset in presets:
        counts = count_parameters(preset)
        for part in PARTS:
            c = counts[part]
            lines.append(f"| {preset} | {part} | {c['total']:,} | {c['trainable']:,} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown_table() + "\n")
    for p in ("tiny", "vjepa2-vitl"):
        sys.stdout.write(f"{p}: checkpoint stores {stored_bytes(p) / 1e6:.1f} MB (fp32)\n")

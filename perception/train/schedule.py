"""Learning-rate schedule: linear warmup, then cosine decay to min_lr_ratio x peak (per stage)."""

from __future__ import annotations

import math


def cosine_lr(step: int, steps: int, peak: float, warmup: int = 0, min_ratio: float = 0.05) -> float:
    """LR at stage-local `step` (0-based) of a stage of `steps` steps."""
    if steps <= 0:
        raise ValueError(f"a stage needs steps > 0, got {steps}")
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

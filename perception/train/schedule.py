"""Learning-rate schedule: linear warmup, then cosine decay to min_lr_ratio x peak (per stage)."""

from __future__ import annotations

import math


def cosine_lr(
    step: int, steps: int, peak: float, warmup: int = 0, min_ratio: float = 0.05, progress: float | None = None
) -> float:
    """LR at stage-local `step` (0-based) of a stage of `steps` steps. `progress` in [0, 1] (e.g. the
    fraction of a time budget spent) overrides the step-based position of the decay when it is ahead."""
    if steps <= 0:
        raise ValueError(f"a stage needs steps > 0, got {steps}")
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, steps - warmup)
    p = min(1.0, (step - warmup) / span)
    if progress is not None:
        p = max(p, min(1.0, progress))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))

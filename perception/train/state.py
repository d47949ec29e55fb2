"""A trainer's saved state (OUT/last/trainer.pt): read back as data, never as code."""

from __future__ import annotations

from pathlib import Path

import torch


class ResumeError(RuntimeError):
    """OUT/last/trainer.pt cannot be resumed from (unreadable, or it holds more than tensors and plain data)."""


def load_trainer_state(path: Path) -> dict:
    """The saved optimizer state, step and config. `weights_only=True`: the file holds tensors, numbers,
    strings, lists and dicts only (what `_save_state` writes), so anything else in it (a pickled object
    that would run code on load) is refused instead of executed."""
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise ResumeError(
            f"cannot resume from {path}: {str(exc).splitlines()[0][:300]} "
            "(it must be a trainer state written by `perception train`)"
        ) from exc
    if not isinstance(state, dict) or not {"optimizer", "global_step"} <= set(state):
        raise ResumeError(f"cannot resume from {path}: not a trainer state (no optimizer / global_step)")
    return state

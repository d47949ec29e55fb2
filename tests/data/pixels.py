"""Pixel measurements on uncompressed ShapesWorld frames: colours are exact, so masks are exact."""

from __future__ import annotations

import numpy as np

from perception.data.vocab import COLOURS


def colour_mask(frames: np.ndarray, colour: str) -> np.ndarray:
    """bool [..., H, W]: pixels exactly of the named fill colour."""
    return np.all(frames == np.asarray(COLOURS[colour], dtype=np.uint8), axis=-1)


def area(frame: np.ndarray, colour: str) -> int:
    return int(colour_mask(frame, colour).sum())


def centroid(frame: np.ndarray, colour: str) -> tuple[float, float]:
    """(x, y) in pixels of the fill-colour pixels; raises if the colour is absent."""
    ys, xs = np.nonzero(colour_mask(frame, colour))
    assert len(xs), f"{colour} not visible"
    return float(xs.mean()), float(ys.mean())


def colours_present(frames: np.ndarray) -> set[str]:
    return {c for c in COLOURS if colour_mask(frames, c).any()}

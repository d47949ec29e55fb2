"""Rasterise ShapesWorld objects into uint8 RGB frames with numpy (no drawing library, no GPU).

Positions and radii are fractions of the image side, so one scene renders at any size. Each shape is
an analytic inside-test on coordinates normalised by its radius, evaluated only inside its bounding
box, and drawn with a dark outline so silhouettes stay crisp at 64 px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.data.vocab import COLOURS, SHAPES

OUTLINE_RGB = np.array((12, 12, 12), dtype=np.uint8)


@dataclass(frozen=True)
class Drawable:
    """One object as it looks in one frame (x, y, r are fractions of the image side)."""

    shape: str
    colour: str
    x: float
    y: float
    r: float


def inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test on radius-normalised coordinates (u right, v down); the shape spans [-1, 1]^2."""
    au, av = np.abs(u), np.abs(v)
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(au, av) <= 0.85
    if shape == "triangle":  # apex up; base at v = 0.8
        return (v <= 0.8) & (au <= (v + 1.0) / 1.8 * 1.0)
    if shape == "cross":  # plus sign: two bars a third of the span wide
        return ((au <= 0.34) & (av <= 1.0)) | ((av <= 0.34) & (au <= 1.0))
    raise ValueError(f"unknown shape {shape!r}; valid: {SHAPES}")


def outline_px(size: int) -> float:
    """Outline width in pixels: 1 px at 64, growing with resolution."""
    return max(1.0, size / 64.0)


def draw(img: np.ndarray, obj: Drawable) -> None:
    """Draw one object in place onto img [H, W, 3] uint8 (H == W)."""
    size = img.shape[0]
    cx, cy, radius = obj.x * size, obj.y * size, obj.r * size
    x0, x1 = max(int(cx - radius) - 1, 0), min(int(cx + radius) + 2, size)
    y0, y1 = max(int(cy - radius) - 1, 0), min(int(cy + radius) + 2, size)
    if x0 >= x1 or y0 >= y1:
        return
    dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]  # [1, w] pixel centres
    dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]  # [h, 1]
    outer = inside(obj.shape, dx / radius, dy / radius)  # [h, w]
    inner_r = max(radius - outline_px(size), 0.5)
    inner = inside(obj.shape, dx / inner_r, dy / inner_r)
    patch = img[y0:y1, x0:x1]  # view [h, w, 3]
    patch[outer] = OUTLINE_RGB
    patch[inner] = np.asarray(COLOURS[obj.colour], dtype=np.uint8)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A mid-grey, lightly textured (blocky low-frequency noise, +-8 levels) background [H, W, 3]."""
    base = rng.uniform(95.0, 145.0)
    cells = max(size // 8, 1)
    noise = rng.uniform(-8.0, 8.0, size=(cells, cells)).astype(np.float32)  # [cells, cells]
    reps = -(-size // cells)
    tex = np.kron(noise, np.ones((reps, reps), dtype=np.float32))[:size, :size]  # [H, W]
    tint = rng.uniform(-6.0, 6.0, size=3).astype(np.float32)  # slight colour cast, same for all pixels
    img = base + tex[:, :, None] + tint[None, None, :]  # [H, W, 3]
    return np.clip(img, 0, 255).astype(np.uint8)


def render(bg: np.ndarray, objects: list[Drawable]) -> np.ndarray:
    """One frame: a copy of the background with the objects drawn in order."""
    img = bg.copy()
    for obj in objects:
        draw(img, obj)
    return img

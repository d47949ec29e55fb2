"""Synthetic embedding streams with planted boundaries: piecewise-constant centroids + gaussian noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.eval.selective import Annotation, Stream

COLOURS = ["red", "blue", "green", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "triangle", "star"]
ACTIONS = ["moves left", "moves right", "grows", "shrinks", "stays still"]
CAPTIONS = [f"the {c} {s} {a}" for c in COLOURS for s in SHAPES for a in ACTIONS]


@dataclass
class Planted:
    stream: Stream
    boundaries: list[int]  # first step of every segment but the first
    centroids: np.ndarray  # (len(CAPTIONS), D)


def planted_stream(
    seed: int,
    duration_s: float = 60.0,
    dt: float = 0.25,
    dim: int = 16,
    noise: float = 0.5,
    min_s: float = 1.0,
    max_s: float = 8.0,
) -> Planted:
    """Segments of U(min_s, max_s) seconds, each a random caption's centroid plus noise; adjacent
    segments always differ; one annotation per segment at its middle with two paraphrases, its span the
    segment's [start, end) seconds."""
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(len(CAPTIONS), dim))
    chunks, annotations, bounds = [], [], []
    n, last = 0, -1
    while n * dt < duration_s:
        k = max(1, int(round(rng.uniform(min_s, max_s) / dt)))
        ci = int(rng.integers(len(CAPTIONS)))
        while ci == last:
            ci = int(rng.integers(len(CAPTIONS)))
        chunks.append(centroids[ci] + noise * rng.normal(size=(k, dim)))
        cap = CAPTIONS[ci]
        refs = [cap, cap.replace("the ", "a ", 1)]
        annotations.append(Annotation((n + (k - 1) / 2) * dt, refs, span=(n * dt, (n + k) * dt)))
        if n:
            bounds.append(n)
        n, last = n + k, ci
    embs = np.concatenate(chunks)
    return Planted(Stream(embs, np.arange(len(embs)) * dt, annotations), bounds, centroids)


def nearest_caption_decoder(centroids: np.ndarray):
    """decode(embs) -> the caption of the nearest planted centroid (a perfect decoder of clean input)."""

    def decode(embs: np.ndarray) -> list[str]:
        d = ((embs[:, None, :] - centroids[None]) ** 2).sum(-1)  # (N, n_captions)
        return [CAPTIONS[i] for i in d.argmin(axis=1)]

    return decode

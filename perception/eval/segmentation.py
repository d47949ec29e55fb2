"""Segmentations of an embedding stream for selective decoding: uniform and the paper's offline Ward.

A segmentation is a list of `Segment`s (half-open step ranges) that tile the stream [0, T). Each segment
is decoded once, either from the embedding at its midpoint step or from the mean embedding of the
segment (`decode_inputs`). The online causal segmenter is the live service's
(perception/nodes/segmenter.py); `perception.eval.online` runs it over a recorded stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.sparse import diags
from sklearn.cluster import AgglomerativeClustering

Pooling = Literal["mid", "mean"]


@dataclass(frozen=True)
class Segment:
    start: int  # first step
    end: int  # one past the last step

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"a segment needs 0 <= start < end, got [{self.start}, {self.end})")

    @property
    def mid(self) -> int:
        """Midpoint step (the lower one for an even length)."""
        return (self.start + self.end - 1) // 2


def check_stream(embs: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate an embedding stream: (T, D) finite floats with T strictly increasing times."""
    embs = np.asarray(embs, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if embs.ndim != 2 or embs.shape[0] == 0:
        raise ValueError(f"embeddings must have shape (T>0, D), got {embs.shape}")
    if times.shape != (embs.shape[0],):
        raise ValueError(f"times must have shape ({embs.shape[0]},), got {times.shape}")
    if not (np.all(np.isfinite(embs)) and np.all(np.isfinite(times))):
        raise ValueError("embeddings and times must be finite")
    if np.any(np.diff(times) <= 0):
        raise ValueError("times must be strictly increasing")
    return embs, times


def stream_duration(times: np.ndarray) -> float:
    """Covered time: last - first plus one typical step (a stream of one step lasts one step)."""
    times = np.asarray(times, dtype=np.float64)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    return float(times[-1] - times[0]) + step


def segments_from_boundaries(boundaries: Sequence[int], n_steps: int) -> list[Segment]:
    """Tile [0, n_steps) with segments starting at 0 and at each boundary step (sorted, unique, in (0, T))."""
    cuts = sorted(set(int(b) for b in boundaries))
    if cuts and (cuts[0] <= 0 or cuts[-1] >= n_steps):
        raise ValueError(f"boundaries must lie in (0, {n_steps}), got {cuts[0]}..{cuts[-1]}")
    edges = [0, *cuts, n_steps]
    return [Segment(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def uniform_segments(times: np.ndarray, interval_s: float) -> list[Segment]:
    """Fixed-interval decoding: step i belongs to bin floor((t_i - t_0) / interval). With midpoint pooling
    this is "decode once every `interval_s` seconds"; bins without a step are skipped."""
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    times = np.asarray(times, dtype=np.float64)
    bins = np.floor((times - times[0]) / interval_s + 1e-9).astype(np.int64)
    cuts = np.flatnonzero(np.diff(bins)) + 1
    return segments_from_boundaries(cuts.tolist(), len(times))


def ward_segments(embs: np.ndarray, n_segments: int) -> list[Segment]:
    """The paper's offline segmentation: Ward agglomerative clustering where only temporally adjacent
    clusters may merge (chain connectivity), so every cluster is a contiguous run of steps."""
    embs = np.asarray(embs, dtype=np.float64)
    n_steps = embs.shape[0]
    if not 1 <= n_segments <= n_steps:
        raise ValueError(f"n_segments must lie in [1, {n_steps}], got {n_segments}")
    if n_segments == n_steps:
        return segments_from_boundaries(range(1, n_steps), n_steps)
    if n_segments == 1:
        return [Segment(0, n_steps)]
    chain = diags([np.ones(n_steps - 1), np.ones(n_steps - 1)], [-1, 1], shape=(n_steps, n_steps))
    labels = AgglomerativeClustering(n_clusters=n_segments, linkage="ward", connectivity=chain.tocsr()).fit_predict(
        embs
    )
    cuts = np.flatnonzero(np.diff(labels)) + 1
    return segments_from_boundaries(cuts.tolist(), n_steps)


def ward_segments_for_interval(embs: np.ndarray, times: np.ndarray, interval_s: float) -> list[Segment]:
    """Ward segmentation with n_segments = round(duration / interval_s), clamped to [1, T]."""
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    n = int(round(stream_duration(times) / interval_s))
    return ward_segments(embs, min(max(n, 1), len(times)))


def decode_inputs(
    embs: np.ndarray, times: np.ndarray, segments: Sequence[Segment], pooling: Pooling
) -> tuple[np.ndarray, np.ndarray]:
    """What to decode for each segment and the time its output is stamped with (the midpoint step's time).

    Returns (N, D) embeddings (midpoint step or segment mean, not re-normalised) and (N,) times.
    """
    if pooling not in ("mid", "mean"):
        raise ValueError(f"pooling must be 'mid' or 'mean', got {pooling!r}")
    mids = np.array([s.mid for s in segments], dtype=np.int64)
    if pooling == "mid":
        inputs = embs[mids]
    else:
        inputs = np.stack([embs[s.start : s.end].mean(axis=0) for s in segments])
    return inputs, np.asarray(times)[mids]

"""95 % bootstrap intervals for every reported metric: `{"value", "ci95": [lo, hi], "n"}` in the JSON.

Percentile bootstrap with a fixed seed, so a re-run of the same evaluation prints the same interval.
Items that are not independent (annotations of one stream share its segmenter's mistakes) are resampled
as clusters: pass `groups` and whole groups are drawn with replacement, the statistic recomputed on
every item of the drawn groups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
SEED = 0


@dataclass(frozen=True)
class Estimate:
    value: float  # the statistic on the full sample
    lo: float  # 2.5th percentile of the bootstrap distribution
    hi: float  # 97.5th percentile
    n: int  # units resampled: items, or groups when resampled by group

    def to_dict(self) -> dict:
        return {"value": self.value, "ci95": [self.lo, self.hi], "n": self.n}


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, n) unit indices drawn with replacement."""
    if n < 1:
        raise ValueError("a bootstrap needs at least one unit")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def interval(samples: Sequence[float]) -> tuple[float, float]:
    """The 95 % percentile interval of a bootstrap distribution (NaNs, e.g. undefined ratios, dropped)."""
    arr = np.asarray(samples, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(arr, [2.5, 97.5])
    return float(lo), float(hi)


def bootstrap_statistic(
    n_units: int,
    statistic: Callable[[np.ndarray], float],
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Estimate:
    """`statistic(unit_indices)` on the full sample and on `resamples` draws of the units."""
    full = float(statistic(np.arange(n_units)))
    draws = [float(statistic(idx)) for idx in resample_indices(n_units, resamples, seed)]
    lo, hi = interval(draws)
    return Estimate(full, lo, hi, n_units)


def bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    groups: Sequence[int] | np.ndarray | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Estimate:
    """Mean of per-item values (1.0 / 0.0 for accuracies) with its interval; `groups` resamples clusters.

    Vectorised: a group's sum and count are computed once, then each draw is a weighted sum."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-d sequence, got shape {v.shape}")
    if groups is None:
        sums, counts = v, np.ones_like(v)
    else:
        g = np.asarray(groups)
        if g.shape != v.shape:
            raise ValueError(f"groups has shape {g.shape}, values {v.shape}")
        _, inverse = np.unique(g, return_inverse=True)
        sums = np.bincount(inverse, weights=v)
        counts = np.bincount(inverse).astype(np.float64)
    idx = resample_indices(len(sums), resamples, seed)  # [R, G]
    draws = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    lo, hi = interval(draws)
    return Estimate(float(v.mean()), lo, hi, len(sums))


def accuracy(correct: Sequence[bool] | np.ndarray, groups: Sequence[int] | None = None) -> dict:
    """The JSON form of a per-item accuracy."""
    return bootstrap_mean(np.asarray(correct, dtype=np.float64), groups).to_dict()


def per_key(correct: Sequence[bool], keys: Sequence[str]) -> dict[str, dict]:
    """One accuracy per key (question type, slot), keys sorted."""
    c = np.asarray(correct, dtype=np.float64)
    k = np.asarray(keys)
    return {key: accuracy(c[k == key]) for key in sorted(set(keys))}

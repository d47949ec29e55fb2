"""Online, causal segmenter for selective decoding, with a bounded decision latency: what the events node
runs per camera (perception/nodes/events.py) and what `perception eval` scores (perception/eval/online.py).

The paper segments offline (Ward over the whole stream). A live service cannot see the future, so this
segmenter is fed one embedding at a time and declares a boundary at step b no later than step
b + latency, where latency = window + confirm - 2 steps (state and decisions never use inputs after
the step being pushed; memory is O(window + confirm) embeddings whatever the stream length).

Statistic (a Ward merge cost in noise units): at step t the look-ahead window holds the last `window`
embeddings, steps [t-window+1, t]; the current segment holds the absorbed steps before it. The score of
a boundary at the window's first step is

    z = (n * w / (n + w)) * ||mean(segment) - mean(window)||^2 / (D * sigma^2)

i.e. the increase in within-cluster variance Ward would pay to merge the two, divided by the noise
variance per dimension sigma^2, estimated online from successive differences (E||x_t - x_{t-1}||^2 =
2 D sigma^2 inside a segment; each difference is clipped at 4x the running estimate so boundary jumps do
not inflate it). Under no change z is about 1 whatever n, w and D, so `threshold` is in noise units.

A boundary is declared once z > threshold on `confirm` consecutive steps (isolated noise spikes do not
fire it). It is placed at the buffered step, from the run's first candidate on, that splits segment +
buffer with the largest Ward merge cost (the run starts while the window is only partly new, so its own
candidates sit early). `min_len` forbids candidates closer
than that to the segment start; `max_len` forces a boundary when a segment reaches that length.
Raising `threshold` (or `confirm`, `min_len`) lowers the decode rate; that is the rate/quality knob.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OnlineSegmenterConfig:
    threshold: float = 5.0  # z in noise units; ~1 under no change
    window: int = 4  # look-ahead steps averaged against the segment mean
    confirm: int = 2  # consecutive steps above threshold needed to declare
    min_len: int = 2  # shortest segment, steps
    max_len: int | None = None  # longest segment, steps (None: unbounded)
    # Smallest noise variance per dimension, as a fraction of the embeddings' mean square per dimension. A
    # noise-free scene (a rendered one, a paused camera) repeats its embedding exactly; without a floor the
    # noise estimate stays at 0 and every later change, however small, becomes an infinitely sure boundary.
    noise_floor: float = 1e-3

    def __post_init__(self) -> None:
        if self.window < 1 or self.confirm < 1 or self.min_len < 1:
            raise ValueError(f"window, confirm and min_len must be >= 1, got {self}")
        if self.max_len is not None and self.max_len < self.min_len:
            raise ValueError(f"max_len ({self.max_len}) must be >= min_len ({self.min_len})")
        if not self.threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold}")
        if not self.noise_floor > 0:
            raise ValueError(f"noise_floor must be > 0, got {self.noise_floor}")

    @property
    def latency(self) -> int:
        """Upper bound, in steps, between a boundary's step and the push that declares it."""
        return self.window + self.confirm - 2


@dataclass(frozen=True)
class Boundary:
    index: int  # first step of the new segment
    time: float  # time of that step
    declared_index: int  # step whose push declared it (index <= declared_index <= index + latency)
    score: float  # z at the chosen candidate (inf for a max_len cut)


class OnlineSegmenter:
    """Feed `push(t, emb)` once per step, in time order; it returns the boundaries declared at that step."""

    def __init__(self, config: OnlineSegmenterConfig | None = None) -> None:
        self.config = config or OnlineSegmenterConfig()
        cfg = self.config
        # the last window + confirm - 1 steps (window plus the candidates of a pending run)
        self._recent: deque[tuple[int, float, np.ndarray]] = deque(maxlen=cfg.window + cfg.confirm - 1)
        self._win_sum: np.ndarray | None = None  # sum of the last `window` embeddings
        self._seg_sum: np.ndarray | None = None  # sum of absorbed steps of the current segment
        self._seg_n = 0
        self._seg_start = 0
        self._step = -1
        self._last_time = -np.inf
        self._prev: np.ndarray | None = None
        self._noise_sum = 0.0  # sum of clipped ||dx||^2 / (2 D)
        self._noise_n = 0
        self._sq_sum = 0.0  # sum of ||x||^2 / D, for the noise floor
        self._sq_n = 0
        self._run: list[tuple[float, int]] = []  # (z, candidate step) of the current above-threshold run

    @property
    def segment_start(self) -> int:
        return self._seg_start

    @property
    def steps(self) -> int:
        return self._step + 1

    def _noise_var(self) -> float:
        """Mean clipped step-to-step variance per dimension, never below the floor."""
        floor = self.config.noise_floor * self._sq_sum / self._sq_n if self._sq_n else 0.0
        return max(self._noise_sum / self._noise_n if self._noise_n else 0.0, floor)

    def _update_noise(self, emb: np.ndarray) -> None:
        self._sq_sum += float(emb @ emb) / emb.shape[0]
        self._sq_n += 1
        if self._prev is not None:
            d = float(np.sum((emb - self._prev) ** 2)) / (2 * emb.shape[0])
            if self._noise_n >= 4:
                d = min(d, 4.0 * self._noise_var())
            self._noise_sum += d
            self._noise_n += 1
        self._prev = emb

    def _time_at(self, step: int) -> float:
        for i, t, _e in self._recent:
            if i == step:
                return t
        raise KeyError(step)

    def _start_segment(self, start: int, upto: int) -> None:
        """New segment from `start`; absorb its steps before the window start `upto`."""
        self._seg_start = start
        self._seg_sum = np.zeros_like(self._win_sum)
        self._seg_n = 0
        for i, _t, e in self._recent:
            if start <= i < upto:
                self._seg_sum += e
                self._seg_n += 1
        self._run = []

    def push(self, t: float, emb: np.ndarray) -> list[Boundary]:
        """Consume the embedding of the next step (time t); return boundaries declared now (0 or 1)."""
        cfg = self.config
        x = np.asarray(emb, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(x)):
            raise ValueError("embedding contains NaN or inf")
        if self._win_sum is not None and x.shape != self._win_sum.shape:
            raise ValueError(f"embedding has {x.shape[0]} dims, stream has {self._win_sum.shape[0]}")
        if not t > self._last_time:
            raise ValueError(f"times must increase: got {t} after {self._last_time}")
        self._last_time = float(t)
        self._step += 1
        step = self._step
        if self._win_sum is None:
            self._win_sum = np.zeros_like(x)
            self._seg_sum = np.zeros_like(x)
        self._update_noise(x)

        # the step leaving the window (if any) is absorbed into the current segment
        if len(self._recent) >= cfg.window:
            i_out, _t, e_out = self._recent[-cfg.window]
            self._win_sum -= e_out
            if i_out >= self._seg_start:
                self._seg_sum += e_out
                self._seg_n += 1
        self._recent.append((step, float(t), x))
        self._win_sum += x
        if step + 1 < cfg.window:
            return []
        cand = step - cfg.window + 1  # first step of the window = candidate boundary

        if cfg.max_len is not None and cand - self._seg_start >= cfg.max_len and not self._run:
            cut = self._seg_start + cfg.max_len
            self._start_segment(cut, cand)
            return [Boundary(cut, self._time_at(cut), step, float("inf"))]

        if self._seg_n == 0 or cand - self._seg_start < cfg.min_len:
            self._run = []
            return []
        w = cfg.window
        n = self._seg_n
        diff = self._seg_sum / n - self._win_sum / w
        ward = (n * w / (n + w)) * float(diff @ diff)
        z = ward / (x.shape[0] * self._noise_var() + 1e-12)
        if z <= cfg.threshold:
            self._run = []
            return []
        self._run.append((z, cand))
        if len(self._run) < cfg.confirm:
            return []
        best = self._locate(cand)
        best_z = max(z for z, _ in self._run)
        self._start_segment(best, cand)
        return [Boundary(best, self._time_at(best), step, best_z)]

    def _locate(self, cand: int) -> int:
        """Where exactly the confirmed change happened: the split of (segment + buffered steps) with the
        largest Ward merge cost, among buffered steps from the run's first candidate on. The z-run fires
        once the window is partly new, so its own candidates tend to sit a step or two early."""
        first = max(self._run[0][1], self._seg_start + self.config.min_len)
        # steps of the current segment held in the buffer, and the sums on either side of each split
        held = [(i, e) for i, _t, e in self._recent if i >= self._seg_start]
        absorbed_in_buffer = sum((e for i, e in held if i < cand), np.zeros_like(self._win_sum))
        left_sum = self._seg_sum - absorbed_in_buffer  # absorbed steps before the buffer
        left_n = self._seg_n - sum(1 for i, _ in held if i < cand)
        total_sum = left_sum + sum((e for _, e in held), np.zeros_like(self._win_sum))
        total_n = left_n + len(held)
        best, best_cost = first, -1.0
        for i, e in held:
            if i >= first and left_n > 0 and total_n - left_n > 0:
                right_n = total_n - left_n
                diff = left_sum / left_n - (total_sum - left_sum) / right_n
                cost = left_n * right_n / total_n * float(diff @ diff)
                if cost > best_cost:
                    best, best_cost = i, cost
            left_sum = left_sum + e
            left_n += 1
        return best


def segment_steps(min_len_s: float, max_len_s: float | None, cadence_s: float) -> tuple[int, int | None]:
    """(min_len, max_len) in segmenter steps for windows `cadence_s` seconds of stream time apart, so that a
    segment's length means the same seconds whatever the stride or the camera's frame rate. At least one
    step; max_len never below min_len; None stays None (never force a boundary)."""
    lo = max(1, round(min_len_s / cadence_s))
    return lo, None if max_len_s is None else max(lo, round(max_len_s / cadence_s))

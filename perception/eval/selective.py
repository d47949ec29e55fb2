"""Selective-decoding curve (paper §4.6): caption quality (CIDEr-D) against average decoding interval.

For each method -- uniform decoding, offline Ward segmentation, the online causal segmenter -- and each
pooling (decode the segment's midpoint embedding, or its mean), a sweep of settings covers average
intervals from 0.5 s to 20 s. Every ground-truth annotation (a time + reference captions) is matched to
the decoded output nearest in time (outputs are stamped with their segment's midpoint time; ties go to
the earlier output), and CIDEr-D is computed over all annotations of all streams at once.

reduction_at_matched_quality (the paper's 2.85x): the reference quality is uniform decoding every
`reference_interval_s` (1 s) with midpoint pooling. A method "matches" it where its CIDEr is at least
(1 - tolerance) x the reference (tolerance defaults to 1 %, reported with the result, so that one
annotation decoded differently out of a hundred does not decide the figure; pass 0 for the strict rule).
The matched interval is read off the method's curve (points sorted by achieved average interval):
scanning from short to long intervals, the first place where CIDEr falls below that level after having
reached it, interpolated linearly in log(interval) between the two bracketing points. reduction = matched interval / reference interval. If the curve never
reaches the reference, the reduction is None ("not_reached"); if it never falls below it within the
sweep, the longest interval measured is reported as a lower bound ("lower_bound").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from bus.logs import get_logger
from perception.eval.cider import CiderD
from perception.eval.online import segment_online
from perception.eval.segmentation import (
    Pooling,
    Segment,
    check_stream,
    decode_inputs,
    stream_duration,
    uniform_segments,
    ward_segments_for_interval,
)
from perception.nodes.segmenter import OnlineSegmenterConfig

log = get_logger("eval.selective")

Decoder = Callable[[np.ndarray], list[str]]  # (N, D) embeddings -> N captions
METHODS = ("uniform", "offline", "online")
DEFAULT_INTERVALS_S = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.5, 8.0, 10.0, 14.0, 20.0)


@dataclass(frozen=True)
class Annotation:
    time: float  # seconds, same clock as the stream's times
    references: list[str]  # reference captions (paraphrases)


@dataclass(frozen=True)
class Stream:
    embs: np.ndarray  # (T, D) predicted embeddings, one per step
    times: np.ndarray  # (T,) step times, seconds, strictly increasing
    annotations: list[Annotation]

    def __post_init__(self) -> None:
        check_stream(self.embs, self.times)
        if not self.annotations:
            raise ValueError("a stream needs at least one annotation to be scored")


@dataclass(frozen=True)
class CurvePoint:
    method: str  # uniform | offline | online
    pooling: str  # mid | mean
    target_interval_s: float  # what the sweep asked for
    setting: float  # uniform: interval s; offline: same (n_segments = duration / it); online: threshold
    n_decodes: int
    avg_interval_s: float  # total duration / decodes, achieved
    cider: float
    online_config: dict | None = None  # online points: the segmenter config that produced them


@dataclass
class SelectiveDecodingResult:
    points: list[CurvePoint]
    reference_interval_s: float
    reference_cider: float  # uniform, midpoint pooling, every reference_interval_s
    tolerance: float = 0.01  # relative CIDEr shortfall still counted as a match
    reduction_at_matched_quality: dict[str, float | None] = field(default_factory=dict)
    matched_how: dict[str, str] = field(default_factory=dict)  # interpolated | lower_bound | not_reached
    online_config: dict = field(default_factory=dict)

    def curve(self, method: str, pooling: str) -> list[CurvePoint]:
        pts = [p for p in self.points if p.method == method and p.pooling == pooling]
        return sorted(pts, key=lambda p: p.avg_interval_s)

    def to_dict(self) -> dict:
        return {
            "reference_interval_s": self.reference_interval_s,
            "reference_cider": self.reference_cider,
            "tolerance": self.tolerance,
            "reduction_at_matched_quality": dict(self.reduction_at_matched_quality),
            "matched_how": dict(self.matched_how),
            "online_config": dict(self.online_config),
            "points": [asdict(p) for p in self.points],
        }


class _DecodeCache:
    """Decodes each distinct (stream, segment input) once: sweeps revisit the same midpoints often."""

    def __init__(self, decode: Decoder) -> None:
        self._decode = decode
        self._cache: dict[tuple, str] = {}

    def captions(self, key_prefix: tuple, segments: Sequence[Segment], inputs: np.ndarray) -> list[str]:
        keys = [(*key_prefix, s.mid) if key_prefix[-1] == "mid" else (*key_prefix, s.start, s.end) for s in segments]
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        if missing:
            out = self._decode(inputs[missing])
            if len(out) != len(missing):
                raise ValueError(f"decode returned {len(out)} captions for {len(missing)} embeddings")
            for i, text in zip(missing, out, strict=True):
                self._cache[keys[i]] = str(text)
        return [self._cache[k] for k in keys]


def nearest_output(annotation_times: np.ndarray, output_times: np.ndarray) -> np.ndarray:
    """Index of the output nearest in time to each annotation (earlier output on a tie).

    output_times must be sorted ascending."""
    out = np.asarray(output_times, dtype=np.float64)
    ann = np.asarray(annotation_times, dtype=np.float64)
    right = np.clip(np.searchsorted(out, ann, side="left"), 0, len(out) - 1)
    left = np.clip(right - 1, 0, len(out) - 1)
    use_left = np.abs(ann - out[left]) <= np.abs(out[right] - ann)
    return np.where(use_left, left, right)


def _score(
    streams: Sequence[Stream],
    segmentations: Sequence[list[Segment]],
    pooling: Pooling,
    cache: _DecodeCache,
    scorer: CiderD,
) -> tuple[int, float, float]:
    """(decodes, average interval s, CIDEr-D) of one segmentation per stream."""
    candidates: list[str] = []
    n_decodes = 0
    for k, (stream, segs) in enumerate(zip(streams, segmentations, strict=True)):
        inputs, out_times = decode_inputs(stream.embs, stream.times, segs, pooling)
        texts = cache.captions((k, pooling), segs, inputs)
        idx = nearest_output(np.array([a.time for a in stream.annotations]), out_times)
        candidates.extend(texts[i] for i in idx)
        n_decodes += len(segs)
    duration = sum(stream_duration(s.times) for s in streams)
    return n_decodes, duration / n_decodes, scorer.score(candidates).score


def online_for_interval(
    streams: Sequence[Stream], target_s: float, base: OnlineSegmenterConfig, iters: int = 18
) -> tuple[OnlineSegmenterConfig, list[list[Segment]]]:
    """The online threshold whose average interval over all streams is closest to target_s (bisection on
    log threshold; one threshold shared by every stream, as a deployed node would use). Targets shorter
    than `base` can reach (its min_len and confirm set a floor) are retried with min_len = confirm = 1."""
    cfg, segs, err = _bisect_threshold(streams, target_s, base, iters)
    if err > math.log(1.25) and (base.min_len > 1 or base.confirm > 1):
        fast = replace(base, min_len=1, confirm=1)
        cfg2, segs2, err2 = _bisect_threshold(streams, target_s, fast, iters)
        if err2 < err:
            return cfg2, segs2
    return cfg, segs


def _bisect_threshold(
    streams: Sequence[Stream], target_s: float, base: OnlineSegmenterConfig, iters: int
) -> tuple[OnlineSegmenterConfig, list[list[Segment]], float]:
    duration = sum(stream_duration(s.times) for s in streams)

    def run(threshold: float) -> tuple[float, list[list[Segment]]]:
        cfg = replace(base, threshold=threshold)
        segs = [segment_online(s.embs, s.times, cfg)[0] for s in streams]
        return duration / sum(len(x) for x in segs), segs

    lo, hi = math.log(1e-3), math.log(1e5)
    best: tuple[float, float, list[list[Segment]]] | None = None
    for _ in range(iters):
        mid = (lo + hi) / 2
        interval, segs = run(math.exp(mid))
        err = abs(math.log(interval / target_s))
        if best is None or err < best[0]:
            best = (err, math.exp(mid), segs)
        if interval < target_s:
            lo = mid
        else:
            hi = mid
    assert best is not None
    return replace(base, threshold=best[1]), best[2], best[0]


def matched_interval(points: Sequence[CurvePoint], target_cider: float) -> tuple[float | None, str]:
    """Interval at which a curve (sorted by avg interval) stops reaching target_cider (the reference
    already lowered by the tolerance); see the module doc."""
    reached = False
    for prev, cur in zip([None, *points[:-1]], points):
        if cur.cider >= target_cider:
            reached = True
            continue
        if reached and prev is not None:
            x0, x1 = math.log(prev.avg_interval_s), math.log(cur.avg_interval_s)
            frac = (prev.cider - target_cider) / (prev.cider - cur.cider)
            return math.exp(x0 + frac * (x1 - x0)), "interpolated"
    if reached:
        return points[-1].avg_interval_s, "lower_bound"
    return None, "not_reached"


def selective_decoding_curve(
    streams: Sequence[Stream],
    decode: Decoder,
    intervals_s: Sequence[float] = DEFAULT_INTERVALS_S,
    online: OnlineSegmenterConfig | None = None,
    poolings: Sequence[Pooling] = ("mid", "mean"),
    reference_interval_s: float = 1.0,
    tolerance: float = 0.01,
) -> SelectiveDecodingResult:
    """Sweep uniform / offline Ward / online decoding over `intervals_s` and compute the matched reduction."""
    if not streams:
        raise ValueError("need at least one stream")
    online = online or OnlineSegmenterConfig()
    scorer = CiderD([a.references for s in streams for a in s.annotations])
    cache = _DecodeCache(decode)
    points: list[CurvePoint] = []
    for target in sorted(set(intervals_s) | {reference_interval_s}):
        plans: dict[str, tuple[float, list[list[Segment]]]] = {
            "uniform": (target, [uniform_segments(s.times, target) for s in streams]),
            "offline": (target, [ward_segments_for_interval(s.embs, s.times, target) for s in streams]),
        }
        cfg, segs = online_for_interval(streams, target, online)
        plans["online"] = (cfg.threshold, segs)
        for method, (setting, segmentations) in plans.items():
            for pooling in poolings:
                n, avg, cider = _score(streams, segmentations, pooling, cache, scorer)
                extra = asdict(cfg) if method == "online" else None
                points.append(CurvePoint(method, pooling, target, setting, n, avg, cider, extra))
        log.debug("selective sweep point", target_s=target)
    ref = (
        next(
            p
            for p in points
            if p.method == "uniform" and p.pooling == "mid" and p.target_interval_s == reference_interval_s
        )
        if "mid" in poolings
        else None
    )
    ref_cider = (
        ref.cider
        if ref is not None
        else _score(streams, [uniform_segments(s.times, reference_interval_s) for s in streams], "mid", cache, scorer)[
            2
        ]
    )
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must lie in [0, 1), got {tolerance}")
    result = SelectiveDecodingResult(
        points, reference_interval_s, ref_cider, tolerance=tolerance, online_config=asdict(online)
    )
    for method in ("offline", "online"):
        for pooling in poolings:
            key = method if pooling == "mid" else f"{method}_{pooling}"
            interval, how = matched_interval(result.curve(method, pooling), ref_cider * (1 - tolerance))
            result.reduction_at_matched_quality[key] = None if interval is None else interval / reference_interval_s
            result.matched_how[key] = how
    return result


def plot_curve(result: SelectiveDecodingResult, path: str | Path, title: str = "Selective decoding") -> Path:
    """Write the CIDEr vs average-interval curves (log x axis) as a PNG and return its path."""
    from perception.plots import pyplot, save_figure

    plt = pyplot()

    colours = {"uniform": "tab:gray", "offline": "tab:blue", "online": "tab:orange"}
    styles = {"mid": "-", "mean": "--"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in METHODS:
        for pooling in styles:
            pts = result.curve(method, pooling)
            if pts:
                ax.plot(
                    [p.avg_interval_s for p in pts],
                    [p.cider for p in pts],
                    styles[pooling],
                    marker="o",
                    ms=3,
                    color=colours[method],
                    label=f"{method} ({'midpoint' if pooling == 'mid' else 'segment mean'})",
                )
    ax.axhline(result.reference_cider, color="k", lw=0.8, ls=":", label=f"uniform @ {result.reference_interval_s:g} s")
    for key, ratio in result.reduction_at_matched_quality.items():
        if ratio is not None and "_" not in key:
            ax.axvline(ratio * result.reference_interval_s, color=colours[key], lw=0.8, ls=":")
            ax.annotate(
                f"{key} {ratio:.2f}x",
                (ratio * result.reference_interval_s, result.reference_cider),
                textcoords="offset points",
                xytext=(4, -12 if key == "offline" else -24),
                fontsize=8,
                color=colours[key],
            )
    ax.set_xscale("log")
    ax.set_xlabel("average decoding interval (s)")
    ax.set_ylabel("CIDEr-D")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path, dpi=120)

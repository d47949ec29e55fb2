"""Selective-decoding curve (paper §4.6): caption quality (CIDEr-D) against average decoding interval.

For each method -- uniform decoding, offline Ward segmentation, the online causal segmenter -- and each
pooling (decode the segment's midpoint embedding, or its mean), a sweep of settings covers average
intervals from 0.5 s to 20 s. Every ground-truth annotation (a time + reference captions) is matched to
the decoded output nearest in time (outputs are stamped with their segment's midpoint time; ties go to
the earlier output) and scored with CIDEr-D, idf fixed over all annotations of all streams; a point's
CIDEr is the mean of its per-annotation scores.

Reduction at matched quality (the paper's 2.85x), per pooling: the reference is uniform decoding every
`reference_interval_s` (1 s) with the *same* pooling. A curve (sorted by achieved average interval) is
replaced by its monotone envelope E_i = max_{j >= i} CIDEr_j, the best quality reachable at that
interval or longer, so one noisy dip does not end the curve and one lucky point does not extend it past
a real drop. The method matches the reference where E >= (1 - NON_INFERIORITY_MARGIN) x reference; the
matched interval is the largest such interval, interpolated linearly in log(interval) (`crossing`), and
reduction = matched interval / reference interval. Headline: `HEADLINE` (online segmenter, mean
pooling: what the events node does); midpoint pooling is reported beside it, and uniform read against
its own reference (`null_reduction`) shows what the rule gives a method no better than uniform.

Uncertainty: annotations of a stream share its segmenter's mistakes, so intervals come from a cluster
bootstrap over *streams*: every draw recomputes each point's CIDEr (mean of the drawn streams'
per-annotation scores, with multiplicity) and achieved interval, the references, the envelopes and the
crossings. The area ratio (area under a method's envelope vs log interval over uniform's) and the oracle
row (each true segment's mean embedding decoded: the perfect-segmentation bound, which separates the
segmenter's loss from the decoder's) use the same draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from bus.logs import get_logger
from perception.eval.bootstrap import SEED, interval, resample_indices
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
# Relative CIDEr shortfall still counted as "matched quality". Fixed at the 1 % of the earlier
# first-drop rule before any run of this protocol, so it cannot be tuned to the result.
NON_INFERIORITY_MARGIN = 0.01
HEADLINE = "online_mean"  # the events node runs the online segmenter and decodes segment means
RESAMPLES = 1000


@dataclass(frozen=True)
class Annotation:
    time: float  # seconds, same clock as the stream's times
    references: list[str]  # reference captions (paraphrases)
    span: tuple[float, float] | None = None  # the true segment's [start, end) seconds, for the oracle row


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
    cider: float  # mean of per_annotation
    online_config: dict | None = None  # online points: the segmenter config that produced them
    # not serialised: what a bootstrap over streams recomputes the point from
    per_annotation: np.ndarray | None = field(default=None, repr=False, compare=False)  # (A,) CIDEr-D
    decodes_per_stream: np.ndarray | None = field(default=None, repr=False, compare=False)  # (S,)

    def to_dict(self) -> dict:
        skip = {"per_annotation", "decodes_per_stream"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


@dataclass
class SelectiveDecodingResult:
    points: list[CurvePoint]
    reference_interval_s: float
    reference_cider: dict[str, float]  # pooling -> uniform with that pooling every reference_interval_s
    reduction: dict[str, dict] = field(default_factory=dict)  # f"{method}_{pooling}" -> estimate + how
    area_ratio: dict[str, dict] = field(default_factory=dict)  # f"{method}_{pooling}" -> estimate
    # f"uniform_{pooling}" read by the same rule against its own reference: what a method no better than
    # uniform would get (1.0 on a clean monotone curve; more where noise lifts a longer interval's point)
    null_reduction: dict[str, dict] = field(default_factory=dict)
    oracle: dict | None = None  # true segments' mean embeddings decoded; None without spans
    perfect_segmentation_bound: float | None = None  # mean true-segment length / reference interval
    online_config: dict = field(default_factory=dict)
    resamples: int = RESAMPLES
    margin: float = NON_INFERIORITY_MARGIN
    headline: str = HEADLINE

    def curve(self, method: str, pooling: str) -> list[CurvePoint]:
        pts = [p for p in self.points if p.method == method and p.pooling == pooling]
        return sorted(pts, key=lambda p: p.avg_interval_s)

    def to_dict(self) -> dict:
        return {
            "margin": self.margin,
            "reference_interval_s": self.reference_interval_s,
            "reference_cider": dict(self.reference_cider),
            "headline": self.headline,
            "reduction": {k: dict(v) for k, v in self.reduction.items()},
            "area_ratio": {k: dict(v) for k, v in self.area_ratio.items()},
            "null_reduction": {k: dict(v) for k, v in self.null_reduction.items()},
            "oracle": None if self.oracle is None else dict(self.oracle),
            "perfect_segmentation_bound": self.perfect_segmentation_bound,
            "online_config": dict(self.online_config),
            "resamples": self.resamples,
            "points": [p.to_dict() for p in self.points],
        }


class _DecodeCache:
    """Decodes each distinct (stream, segment input) once: sweeps revisit the same midpoints often."""

    def __init__(self, decode: Decoder) -> None:
        self._decode = decode
        self._cache: dict[tuple, str] = {}

    def __len__(self) -> int:
        return len(self._cache)  # distinct decodes so far

    def captions(self, key_prefix: tuple, segments: Sequence[Segment], inputs: np.ndarray) -> list[str]:
        keys = [(*key_prefix, s.mid) if key_prefix[-1] == "mid" else (*key_prefix, s.start, s.end) for s in segments]
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        if missing:
            out = _checked(self._decode, inputs[missing])
            for i, text in zip(missing, out, strict=True):
                self._cache[keys[i]] = str(text)
        return [self._cache[k] for k in keys]


def _checked(decode: Decoder, inputs: np.ndarray) -> list[str]:
    out = decode(inputs)
    if len(out) != len(inputs):
        raise ValueError(f"decode returned {len(out)} captions for {len(inputs)} embeddings")
    return [str(t) for t in out]


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
) -> tuple[np.ndarray, np.ndarray]:
    """(decodes per stream (S,), per-annotation CIDEr-D (A,)) of one segmentation per stream."""
    candidates: list[str] = []
    for k, (stream, segs) in enumerate(zip(streams, segmentations, strict=True)):
        inputs, out_times = decode_inputs(stream.embs, stream.times, segs, pooling)
        texts = cache.captions((k, pooling), segs, inputs)
        idx = nearest_output(np.array([a.time for a in stream.annotations]), out_times)
        candidates.extend(texts[i] for i in idx)
    return np.array([len(s) for s in segmentations]), scorer.score(candidates).per_item


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
        interval_s, segs = run(math.exp(mid))
        err = abs(math.log(interval_s / target_s))
        if best is None or err < best[0]:
            best = (err, math.exp(mid), segs)
        if interval_s < target_s:
            lo = mid
        else:
            hi = mid
    assert best is not None
    return replace(base, threshold=best[1]), best[2], best[0]


# ---- the matched-quality rule: pure functions of one curve ----------------------------------------


def envelope(ciders: Sequence[float] | np.ndarray) -> np.ndarray:
    """E_i = max_{j >= i} ciders_j for a curve sorted by interval: the best quality reachable at this
    interval or a longer one (non-increasing)."""
    c = np.asarray(ciders, dtype=np.float64)
    return np.maximum.accumulate(c[::-1])[::-1]


def crossing(
    intervals: Sequence[float] | np.ndarray, ciders: Sequence[float] | np.ndarray, target: float
) -> tuple[float | None, str]:
    """The largest interval at which the curve's envelope still reaches `target`, and how it was found.

    Interpolated linearly in log(interval) between the last point at/above the target and the next one
    below ("interpolated"); the longest interval measured if the last point still matches
    ("lower_bound"); None if even the shortest interval's envelope is below ("not_reached")."""
    x = np.asarray(intervals, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    x, env = x[order], envelope(np.asarray(ciders, dtype=np.float64)[order])
    if x.size == 0 or env[0] < target:
        return None, "not_reached"
    i = int(np.flatnonzero(env >= target)[-1])  # env is non-increasing: the matching points are a prefix
    if i == x.size - 1:
        return float(x[-1]), "lower_bound"
    frac = (env[i] - target) / (env[i] - env[i + 1])
    lx0, lx1 = math.log(x[i]), math.log(x[i + 1])
    return math.exp(lx0 + frac * (lx1 - lx0)), "interpolated"


def _envelope_area(x: np.ndarray, env: np.ndarray, knots: np.ndarray) -> float:
    """Area under an envelope (x sorted ascending), piecewise linear in log x, over the sorted log-x
    `knots` (exact when the knots include every point of the curve inside their range)."""
    y = np.interp(knots, np.log(x), env)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(knots)))


def area_ratio(
    intervals: Sequence[float] | np.ndarray,
    ciders: Sequence[float] | np.ndarray,
    ref_intervals: Sequence[float] | np.ndarray,
    ref_ciders: Sequence[float] | np.ndarray,
) -> float | None:
    """Area under a curve's envelope of CIDEr vs log(interval) over the reference curve's, on the range
    both cover. > 1: more quality per log-interval than the reference. None if the range or the
    reference's area is empty."""
    xa, xb = np.asarray(intervals, dtype=np.float64), np.asarray(ref_intervals, dtype=np.float64)
    lo, hi = max(xa.min(), xb.min()), min(xa.max(), xb.max())
    if not lo < hi:
        return None
    la, lb = math.log(lo), math.log(hi)
    inside = np.log(np.concatenate([xa, xb]))
    knots = np.unique(np.concatenate([[la, lb], inside[(inside > la) & (inside < lb)]]))
    sort_a, sort_b = np.argsort(xa, kind="stable"), np.argsort(xb, kind="stable")
    env_a = envelope(np.asarray(ciders, dtype=np.float64)[sort_a])
    env_b = envelope(np.asarray(ref_ciders, dtype=np.float64)[sort_b])
    denom = _envelope_area(xb[sort_b], env_b, knots)
    if denom <= 0:
        return None
    return _envelope_area(xa[sort_a], env_a, knots) / denom


# ---- bootstrap over streams ------------------------------------------------------------------------


def stream_weights(n_streams: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(1 + resamples, S) multiplicity of each stream: row 0 the full sample (all ones), then one row
    per bootstrap draw of streams with replacement."""
    idx = resample_indices(n_streams, resamples, seed)
    counts = np.zeros((resamples, n_streams))
    np.add.at(counts, (np.arange(resamples)[:, None], idx), 1.0)
    return np.vstack([np.ones((1, n_streams)), counts])


@dataclass(frozen=True)
class _Draws:
    """Every point's CIDEr and achieved interval on the full sample (row 0) and on each draw."""

    weights: np.ndarray  # (1 + R, S)
    annotation_stream: np.ndarray  # (A,) stream index of each annotation
    durations: np.ndarray  # (S,) seconds

    def mean(self, per_annotation: np.ndarray) -> np.ndarray:
        """(1 + R,) mean of per-annotation values over the drawn streams' annotations."""
        s = len(self.durations)
        sums = np.bincount(self.annotation_stream, weights=per_annotation, minlength=s)
        counts = np.bincount(self.annotation_stream, minlength=s).astype(np.float64)
        return (self.weights @ sums) / (self.weights @ counts)

    def ciders(self, points: Sequence[CurvePoint]) -> np.ndarray:
        """(1 + R, P)"""
        return np.stack([self.mean(p.per_annotation) for p in points], axis=1)

    def intervals(self, points: Sequence[CurvePoint]) -> np.ndarray:
        """(1 + R, P) drawn duration / drawn decodes."""
        decodes = np.stack([p.decodes_per_stream for p in points], axis=1).astype(np.float64)
        return (self.weights @ self.durations)[:, None] / (self.weights @ decodes)


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _estimate(full: float | None, draws: np.ndarray, n: int) -> dict:
    lo, hi = interval(draws)
    return {"value": _finite(full), "ci95": [_finite(lo), _finite(hi)], "n": n}


def _reduction(xs: np.ndarray, cs: np.ndarray, ref: np.ndarray, margin: float, ref_s: float, n: int) -> dict:
    """The matched reduction on the full sample (row 0) with its bootstrap interval; a draw that never
    reaches the reference counts as reduction 0, a lower bound as the longest interval measured."""
    found = [crossing(xs[r], cs[r], (1 - margin) * ref[r]) for r in range(len(xs))]
    values = np.array([0.0 if x is None else x / ref_s for x, _ in found])
    hows = [how for _, how in found[1:]]
    full, how = found[0]
    out = _estimate(None if full is None else full / ref_s, values[1:], n)
    out.update(how=how, draws_not_reached=hows.count("not_reached"), draws_lower_bound=hows.count("lower_bound"))
    return out


def _matched(xs: np.ndarray, cs: np.ndarray, ref_cider: float, ref_draws: np.ndarray, ref_s: float, n: int) -> dict:
    """`_reduction`, except against a zero reference, which every curve "matches": the ratio means nothing."""
    if ref_cider > 0:
        return _reduction(xs, cs, ref_draws, NON_INFERIORITY_MARGIN, ref_s, n)
    empty = {"value": None, "ci95": [None, None], "n": n, "how": "reference_cider_zero"}
    return {**empty, "draws_not_reached": 0, "draws_lower_bound": 0}


def _area(xs: np.ndarray, cs: np.ndarray, uxs: np.ndarray, ucs: np.ndarray, n: int) -> dict:
    """`area_ratio` against uniform on the full sample (row 0) and every draw (undefined draws dropped)."""
    ratios = [area_ratio(xs[r], cs[r], uxs[r], ucs[r]) for r in range(len(xs))]
    draws = np.array([np.nan if v is None else v for v in ratios[1:]])
    return _estimate(ratios[0], draws, n)


def _oracle_scores(streams: Sequence[Stream], decode: Decoder, scorer: CiderD) -> tuple[np.ndarray, int, float] | None:
    """Per-annotation CIDEr-D of decoding each true segment's mean embedding (steps with start <= t < end;
    the step nearest the span's middle if none), the decode count and the mean true-segment length.
    None unless every annotation has a span."""
    anns = [a for s in streams for a in s.annotations]
    if any(a.span is None for a in anns):
        return None
    inputs, lengths = [], []
    for s in streams:
        times = np.asarray(s.times, dtype=np.float64)
        for a in s.annotations:
            assert a.span is not None
            start, end = a.span
            inside = (times >= start) & (times < end)
            if not inside.any():
                inside = np.arange(len(times)) == int(np.argmin(np.abs(times - (start + end) / 2)))
            inputs.append(np.asarray(s.embs, dtype=np.float64)[inside].mean(axis=0))
            lengths.append(end - start)
    texts = _checked(decode, np.stack(inputs))
    return scorer.score(texts).per_item, len(texts), float(np.mean(lengths))


def _oracle_row(
    per_annotation: np.ndarray, n_decodes: int, duration: float, draws: _Draws, ref_mean: np.ndarray | None
) -> dict:
    cider = draws.mean(per_annotation)
    n = len(draws.durations)
    vs = None if ref_mean is None else cider / np.where(ref_mean > 0, ref_mean, np.nan)
    return {
        "cider": _estimate(cider[0], cider[1:], n),
        "decodes": n_decodes,
        "avg_interval_s": duration / n_decodes,
        "vs_reference_mean": None if vs is None else _estimate(vs[0], vs[1:], n),
    }


# ---- the sweep -------------------------------------------------------------------------------------


def _sweep(
    streams: Sequence[Stream],
    cache: _DecodeCache,
    scorer: CiderD,
    targets: Sequence[float],
    online: OnlineSegmenterConfig,
    poolings: Sequence[Pooling],
) -> list[CurvePoint]:
    duration = sum(stream_duration(s.times) for s in streams)
    points: list[CurvePoint] = []
    for k, target in enumerate(targets):
        plans: dict[str, tuple[float, list[list[Segment]]]] = {
            "uniform": (target, [uniform_segments(s.times, target) for s in streams]),
            "offline": (target, [ward_segments_for_interval(s.embs, s.times, target) for s in streams]),
        }
        cfg, segs = online_for_interval(streams, target, online)
        plans["online"] = (cfg.threshold, segs)
        for method, (setting, segmentations) in plans.items():
            for pooling in poolings:
                decodes, per_ann = _score(streams, segmentations, pooling, cache, scorer)
                n = int(decodes.sum())
                extra = asdict(cfg) if method == "online" else None
                points.append(
                    CurvePoint(
                        method,
                        pooling,
                        target,
                        setting,
                        n,
                        duration / n,
                        float(per_ann.mean()),
                        extra,
                        per_ann,
                        decodes,
                    )
                )
        log.info("selective sweep point", point=f"{k + 1}/{len(targets)}", target_s=target, decodes=len(cache))
    return points


def selective_decoding_curve(
    streams: Sequence[Stream],
    decode: Decoder,
    intervals_s: Sequence[float] = DEFAULT_INTERVALS_S,
    online: OnlineSegmenterConfig | None = None,
    poolings: Sequence[Pooling] = ("mid", "mean"),
    reference_interval_s: float = 1.0,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> SelectiveDecodingResult:
    """Sweep uniform / offline Ward / online decoding over `intervals_s` (plus the reference interval),
    then the matched reductions, area ratios and oracle row, each with a bootstrap over streams."""
    if not streams:
        raise ValueError("need at least one stream")
    online = online or OnlineSegmenterConfig()
    scorer = CiderD([a.references for s in streams for a in s.annotations])
    cache = _DecodeCache(decode)
    targets = sorted(set(intervals_s) | {reference_interval_s})
    points = _sweep(streams, cache, scorer, targets, online, poolings)
    draws = _Draws(
        stream_weights(len(streams), resamples, seed),
        np.array([k for k, s in enumerate(streams) for _ in s.annotations]),
        np.array([stream_duration(s.times) for s in streams]),
    )
    n = len(streams)
    result = SelectiveDecodingResult(
        points, reference_interval_s, {}, online_config=asdict(online), resamples=resamples
    )
    refs: dict[str, np.ndarray] = {}
    for pooling in poolings:
        uniform = result.curve("uniform", pooling)
        ref_point = next(p for p in uniform if p.target_interval_s == reference_interval_s)
        refs[pooling] = draws.ciders([ref_point])[:, 0]
        result.reference_cider[pooling] = ref_point.cider
        uxs, ucs = draws.intervals(uniform), draws.ciders(uniform)
        ref_cider, ref_draws = ref_point.cider, refs[pooling]
        result.null_reduction[f"uniform_{pooling}"] = _matched(uxs, ucs, ref_cider, ref_draws, reference_interval_s, n)
        for method in ("offline", "online"):
            pts, key = result.curve(method, pooling), f"{method}_{pooling}"
            xs, cs = draws.intervals(pts), draws.ciders(pts)
            result.reduction[key] = _matched(xs, cs, ref_cider, ref_draws, reference_interval_s, n)
            result.area_ratio[key] = _area(xs, cs, uxs, ucs, n)
    oracle = _oracle_scores(streams, decode, scorer)
    if oracle is not None:
        per_ann, n_dec, mean_len = oracle
        duration = float(draws.durations.sum())
        result.oracle = _oracle_row(per_ann, n_dec, duration, draws, refs.get("mean"))
        result.perfect_segmentation_bound = mean_len / reference_interval_s
    log.info(
        "selective decoding",
        streams=n,
        headline=result.reduction.get(HEADLINE, {}).get("value"),
        reference_cider=result.reference_cider,
    )
    return result


# ---- plot ------------------------------------------------------------------------------------------


def plot_curve(result: SelectiveDecodingResult, path: str | Path, title: str = "Selective decoding") -> Path:
    """Write CIDEr vs average interval (log x) as a PNG: raw points as markers, envelopes as lines (segment
    mean solid, midpoint dashed), the two references, the oracle, and the headline crossing with its ci95."""
    from perception.plots import pyplot, save_figure

    plt = pyplot()
    colours = {"uniform": "tab:gray", "offline": "tab:blue", "online": "tab:orange"}
    styles = {"mean": "-", "mid": "--"}
    names = {"mean": "mean", "mid": "midpoint"}
    fig, ax = plt.subplots(figsize=(8, 5))
    for method in METHODS:
        for pooling, ls in styles.items():
            pts = result.curve(method, pooling)
            if not pts:
                continue
            xs, cs = [p.avg_interval_s for p in pts], [p.cider for p in pts]
            marker = "o" if pooling == "mean" else "x"
            ax.plot(xs, cs, marker, ms=3.5, color=colours[method], alpha=0.6, mfc="none" if marker == "o" else None)
            ax.plot(xs, envelope(cs), ls, lw=1.4, color=colours[method], label=f"{method}, {names[pooling]}")
    for pooling, ref in result.reference_cider.items():
        ax.axhline(
            ref,
            color="k",
            lw=0.8,
            ls=styles[pooling],
            alpha=0.7,
            label=f"uniform @ {result.reference_interval_s:g} s, {names[pooling]} (reference)",
        )
    if result.oracle is not None:
        ax.plot(
            result.oracle["avg_interval_s"],
            result.oracle["cider"]["value"],
            "*",
            ms=11,
            color="tab:green",
            label="oracle: true segments, mean",
        )
    _mark_headline(ax, result, colours["online"])
    ax.set_xscale("log")
    ax.set_xlabel("average decoding interval (s)")
    ax.set_ylabel("CIDEr-D")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path, dpi=120)


def _mark_headline(ax, result: SelectiveDecodingResult, colour: str) -> None:
    """Vertical line at the headline's matched interval (value in the legend), its ci95 shaded (clipped to
    the axis on a log x)."""
    red = result.reduction.get(result.headline)
    if not red or red["value"] is None:
        return
    s = result.reference_interval_s
    x = red["value"] * s
    lo, hi = red["ci95"]
    if lo is not None and hi is not None:
        floor = min(p.avg_interval_s for p in result.points) / 2
        ax.axvspan(max(lo * s, floor), hi * s, color=colour, alpha=0.12, lw=0)
    label = f"{result.headline} matched: {red['value']:.2f}x, ci95 [{_fmt(lo)}, {_fmt(hi)}] ({red['how']})"
    ax.axvline(x, color=colour, lw=1.0, ls=":", label=label)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"

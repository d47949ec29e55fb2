"""Compare what two runs over the same frames perceived: segment boundaries (matched within a tolerance),
captions, watch crossings and the embedding of every window; thresholds say which differences fail."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from perception.messages import Caption, Event
from perception.sessions.perceived import Perceived, Span


@dataclass(frozen=True)
class Thresholds:
    """What fails a comparison (None: not checked). `exact`: any difference at all."""

    max_boundary_drift_s: float | None = None  # mean |shift| of matched boundaries
    min_boundary_f1: float | None = None
    max_caption_changes: int | None = None  # changed + gained + lost (a caption only moved does not count)
    max_watch_changes: int | None = None  # watch crossings gained + lost
    min_cosine_p5: float | None = None  # 5th percentile of the per-window cosine
    exact: bool = False

    @property
    def gated(self) -> bool:
        """Whether any threshold is set (without one, `perception test` exits 0 whatever differs)."""
        return self.exact or any(
            v is not None
            for v in (
                self.max_boundary_drift_s,
                self.min_boundary_f1,
                self.max_caption_changes,
                self.max_watch_changes,
                self.min_cosine_p5,
            )
        )


@dataclass
class Boundaries:
    """Segment ends per camera, matched one to one within `tolerance_s` (nearest first)."""

    tolerance_s: float
    baseline: int = 0
    candidate: int = 0
    matched: int = 0
    exact: int = 0  # matched at the very same frame
    mean_shift_s: float = 0.0  # mean |candidate - baseline| over matched boundaries
    max_shift_s: float = 0.0
    relabelled: int = 0  # segments of the same span whose top label differs
    lost: list[tuple[str, float]] = field(default_factory=list)  # (cam, s) only in the baseline
    gained: list[tuple[str, float]] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.matched / self.candidate if self.candidate else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.baseline if self.baseline else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class CaptionChange:
    kind: Literal["changed", "moved", "gained", "lost"]
    cam: str
    start_s: float  # of the baseline's segment (the candidate's when gained)
    end_s: float
    baseline: str | None
    candidate: str | None
    candidate_span_s: tuple[float, float] | None = None  # when it moved


@dataclass
class WatchChange:
    kind: Literal["gained", "lost"]
    cam: str
    watch: str
    active: bool
    t_s: float


@dataclass
class Drift:
    """Cosine between the two runs' embedding of each window both have."""

    matched: int = 0
    bitwise_equal: int = 0
    cosine_mean: float | None = None
    cosine_p5: float | None = None
    cosine_min: float | None = None
    only_baseline: int = 0
    only_candidate: int = 0


@dataclass
class SessionDiff:
    session: str
    baseline: str
    candidate: str
    boundaries: Boundaries
    captions: list[CaptionChange]
    watches: list[WatchChange]
    drift: Drift
    latency: dict[str, dict[str, float | None]]  # baseline / candidate: live latencies (None offline)
    run: dict[str, Any] | None = None  # the offline run's own figures
    edge_excluded: int = 0  # windows, segments, captions and crossings cut by the recording's edges

    @property
    def differences(self) -> int:
        """Every difference counted once: boundaries lost or gained or shifted, relabelled segments,
        caption and watch changes, windows only one side has or whose embedding is not bitwise equal."""
        b, d = self.boundaries, self.drift
        return (
            len(b.lost)
            + len(b.gained)
            + (b.matched - b.exact)
            + b.relabelled
            + len(self.captions)
            + len(self.watches)
            + d.only_baseline
            + d.only_candidate
            + (d.matched - d.bitwise_equal)
        )

    def crossed(self, t: Thresholds) -> list[str]:
        """The thresholds this comparison fails, each as a sentence."""
        out = []
        b, d = self.boundaries, self.drift
        if t.exact and self.differences:
            out.append(f"{self.differences} differences, --exact allows none")
        if t.max_boundary_drift_s is not None and b.mean_shift_s > t.max_boundary_drift_s:
            out.append(f"boundary drift {b.mean_shift_s:.3f} s > {t.max_boundary_drift_s} s")
        if t.min_boundary_f1 is not None and b.f1 < t.min_boundary_f1:
            out.append(f"boundary F1 {b.f1:.3f} < {t.min_boundary_f1}")
        changes = sum(c.kind != "moved" for c in self.captions)
        if t.max_caption_changes is not None and changes > t.max_caption_changes:
            out.append(f"{changes} caption changes > {t.max_caption_changes}")
        if t.max_watch_changes is not None and len(self.watches) > t.max_watch_changes:
            out.append(f"{len(self.watches)} watch changes > {t.max_watch_changes}")
        if t.min_cosine_p5 is not None and (d.cosine_p5 is None or d.cosine_p5 < t.min_cosine_p5):
            out.append(f"embedding cosine p5 {d.cosine_p5} < {t.min_cosine_p5}")
        return out

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["boundaries"].update(
            precision=round(self.boundaries.precision, 4),
            recall=round(self.boundaries.recall, 4),
            f1=round(self.boundaries.f1, 4),
        )
        out["differences"] = self.differences
        return out


@dataclass(frozen=True)
class Edges:
    """Per camera, the stretch both runs saw whole, where the recording cut one of them: `lo`, the
    candidate's first window start (the recording's first frame), when the live baseline has windows
    before it; `hi`, the baseline's last window end, when the candidate has windows past it (the recording
    stopped before the live run's last outputs). Absent: no edge on that side."""

    lo: dict[str, int]
    hi: dict[str, int]

    @classmethod
    def of(cls, base: Perceived, cand: Perceived) -> Edges:
        lo, hi = {}, {}
        for cam in {k.cam for k in cand.embeddings}:
            base_spans = [k for k in base.embeddings if k.cam == cam]
            if not base_spans:
                continue
            first = min(k.start_ns for k in cand.embeddings if k.cam == cam)
            if min(k.start_ns for k in base_spans) < first:
                lo[cam] = first
            base_end = max(k.end_ns for k in base_spans)
            if max(k.end_ns for k in cand.embeddings if k.cam == cam) > base_end:
                hi[cam] = base_end
        return cls(lo, hi)

    def inside(self, cam: str, start_ns: int, end_ns: int) -> bool:
        """Whether [start_ns, end_ns] lies within what both runs saw (not cut by the recording's edges)."""
        return start_ns >= self.lo.get(cam, start_ns) and end_ns <= self.hi.get(cam, end_ns)


def trim_edges(base: Perceived, cand: Perceived) -> int:
    """Leave out of both sides what the recording's start or end cut; returns how many items.

    A recording attached to a running pipeline (`perception record`) starts mid-segment: the live run
    (`base`) has windows with frames before the recording's first one, and its segmenter and watches had
    history the offline run never sees. Then windows outside both runs' common stretch (`Edges`) are left
    out, and so is everything before the first segment boundary both runs share (per camera): the
    segments, captions and watch crossings up to it were decided on frames only one run saw. At the end,
    where the recording stopped before the live run's last outputs, what ends past the common stretch is
    left out, and so is what ends after the baseline's last segment (the offline run flushes its open
    segment where the recording stopped; the live one had not closed it). A recording from its first
    frame to its last caption (`perception up --record`) loses nothing here.

    Not covered: the online segmenter's noise estimate accumulates over all the frames it saw, so in a
    recording attached mid-stream a boundary soon after the first shared one can still differ (the offline
    run has less history); it is reported as a difference.
    """
    if not cand.embeddings or not base.embeddings:
        return 0
    edges = Edges.of(base, cand)
    start = {}  # cam -> capture ns from which segments, captions and crossings are compared
    for cam, lo in edges.lo.items():  # only where the live run saw frames before the recording's first
        ends = [{e.end_ns for e in p.segments if e.cam == cam and e.end_ns > lo} for p in (base, cand)]
        common = sorted(ends[0] & ends[1])
        start[cam] = common[0] if common else lo  # none shared: only what began before the recording is cut

    # the end: the baseline holds segments up to where its recording stopped; past its last segment end it
    # knows nothing (the live run went on unrecorded) while the offline run flushes its open segment there
    last = {cam: max(e.end_ns for e in base.segments if e.cam == cam) for cam in {e.cam for e in base.segments}}

    def keep(cam: str, start_ns: int, end_ns: int) -> bool:
        return (
            edges.inside(cam, start_ns, end_ns)
            and start_ns >= start.get(cam, start_ns)
            and end_ns <= last.get(cam, end_ns)
        )

    cut = 0
    for p in (base, cand):
        kept = {k: v for k, v in p.embeddings.items() if edges.inside(k.cam, k.start_ns, k.end_ns)}
        segments = [e for e in p.segments if keep(e.cam, e.start_ns, e.end_ns)]
        captions = [c for c in p.captions if keep(c.cam, c.start_ns, c.end_ns)]
        watches = [e for e in p.watches if keep(e.cam, e.end_ns, e.end_ns)]
        cut += len(p.embeddings) - len(kept) + len(p.segments) - len(segments)
        cut += len(p.captions) - len(captions) + len(p.watches) - len(watches)
        p.embeddings, p.segments, p.captions, p.watches = kept, segments, captions, watches
        p.windows = {k: v for k, v in p.windows.items() if k in kept}
    return cut


def compare(session: str, base: Perceived, cand: Perceived, *, tolerance_s: float = 0.5) -> SessionDiff:
    """`cand` against `base`, both over the frames of `session`. What the recording's edges cut is left out
    of both sides first (`trim_edges`; counted in `edge_excluded`): it is not a difference."""
    for cam, t0 in cand.t0_ns.items():
        base.t0_ns.setdefault(cam, t0)  # one origin per camera for both sides' seconds
    edge_excluded = trim_edges(base, cand)
    return SessionDiff(
        session=session,
        baseline=str(base.path),
        candidate=str(cand.path),
        boundaries=compare_boundaries(base, cand, tolerance_s),
        captions=compare_captions(base, cand),
        watches=compare_watches(base, cand),
        drift=compare_embeddings(base, cand),
        latency={"baseline": base.latency(), "candidate": cand.latency()},
        run=cand.run,
        edge_excluded=edge_excluded,
    )


def match_nearest(a: list[float], b: list[float], tolerance: float) -> list[tuple[int, int]]:
    """One-to-one pairs (i, j) with |a[i] - b[j]| <= tolerance, the closest pairs first."""
    pairs = sorted((abs(x - y), i, j) for i, x in enumerate(a) for j, y in enumerate(b) if abs(x - y) <= tolerance)
    used_a, used_b, out = set(), set(), []
    for _, i, j in pairs:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j))
    return out


def _top(e: Event) -> str | None:
    return e.labels[0].label if e.labels else None


def compare_boundaries(base: Perceived, cand: Perceived, tolerance_s: float) -> Boundaries:
    out = Boundaries(tolerance_s, baseline=len(base.segments), candidate=len(cand.segments))
    shifts = []
    for cam in sorted({e.cam for e in base.segments} | {e.cam for e in cand.segments}):
        a = [e for e in base.segments if e.cam == cam]
        b = [e for e in cand.segments if e.cam == cam]
        ta = [base.seconds(cam, e.end_ns) for e in a]
        tb = [base.seconds(cam, e.end_ns) for e in b]
        pairs = match_nearest(ta, tb, tolerance_s)
        for i, j in pairs:
            shifts.append(abs(tb[j] - ta[i]))
            out.exact += a[i].end_ns == b[j].end_ns
            out.relabelled += (a[i].start_ns, a[i].end_ns) == (b[j].start_ns, b[j].end_ns) and _top(a[i]) != _top(b[j])
        matched_a, matched_b = {i for i, _ in pairs}, {j for _, j in pairs}
        out.lost += [(cam, round(ta[i], 3)) for i in range(len(a)) if i not in matched_a]
        out.gained += [(cam, round(tb[j], 3)) for j in range(len(b)) if j not in matched_b]
    out.matched = len(shifts)
    if shifts:
        out.mean_shift_s = round(float(np.mean(shifts)), 4)
        out.max_shift_s = round(float(np.max(shifts)), 4)
    return out


def _overlap(a: Caption, b: Caption) -> float:
    """Intersection over union of two captions' capture-time spans."""
    inter = min(a.end_ns, b.end_ns) - max(a.start_ns, b.start_ns)
    union = max(a.end_ns, b.end_ns) - min(a.start_ns, b.start_ns)
    return inter / union if inter > 0 and union > 0 else 0.0


def compare_captions(base: Perceived, cand: Perceived) -> list[CaptionChange]:
    """Captions of the very same segment span compared by text; the others paired by the largest overlap
    (IoU >= 0.5: `moved` when the text is the same), the rest lost or gained."""
    s = base.seconds
    by_span = {Span(c.cam, c.start_ns, c.end_ns): c for c in cand.captions}
    left_b, left_c, out = [], dict(by_span), []
    for c in base.captions:
        other = left_c.pop(Span(c.cam, c.start_ns, c.end_ns), None)
        if other is None:
            left_b.append(c)
        elif other.text != c.text:
            out.append(CaptionChange("changed", c.cam, s(c.cam, c.start_ns), s(c.cam, c.end_ns), c.text, other.text))
    for c in left_b:
        best = max((o for o in left_c.values() if o.cam == c.cam), key=lambda o: _overlap(c, o), default=None)
        span = (round(s(c.cam, c.start_ns), 3), round(s(c.cam, c.end_ns), 3))
        if best is None or _overlap(c, best) < 0.5:
            out.append(CaptionChange("lost", c.cam, *span, c.text, None))
            continue
        del left_c[Span(best.cam, best.start_ns, best.end_ns)]
        moved = (round(s(c.cam, best.start_ns), 3), round(s(c.cam, best.end_ns), 3))
        out.append(CaptionChange("moved" if best.text == c.text else "changed", c.cam, *span, c.text, best.text, moved))
    for o in left_c.values():
        out.append(
            CaptionChange("gained", o.cam, round(s(o.cam, o.start_ns), 3), round(s(o.cam, o.end_ns), 3), None, o.text)
        )
    return sorted(out, key=lambda c: (c.cam, c.start_s))


def compare_watches(base: Perceived, cand: Perceived) -> list[WatchChange]:
    """Watch crossings by (camera, watch, direction, window): those only one side has."""

    def keys(p: Perceived) -> set[tuple[str, str, bool, int]]:
        return {(e.cam, e.watch_id or e.watch or "", bool(e.active), e.end_ns) for e in p.watches}

    a, b = keys(base), keys(cand)
    out = [WatchChange("lost", cam, w, act, round(base.seconds(cam, t), 3)) for cam, w, act, t in a - b]
    out += [WatchChange("gained", cam, w, act, round(base.seconds(cam, t), 3)) for cam, w, act, t in b - a]
    return sorted(out, key=lambda c: (c.cam, c.t_s, c.watch))


def compare_embeddings(base: Perceived, cand: Perceived) -> Drift:
    both = [k for k in base.embeddings if k in cand.embeddings]
    out = Drift(
        matched=len(both),
        only_baseline=len(base.embeddings) - len(both),
        only_candidate=len(cand.embeddings) - len(both),
    )
    if not both:
        return out
    a = np.stack([base.embeddings[k] for k in both]).astype(np.float64)  # [N, D]
    b = np.stack([cand.embeddings[k] for k in both]).astype(np.float64)
    out.bitwise_equal = int(sum(base.embeddings[k].tobytes() == cand.embeddings[k].tobytes() for k in both))
    if a.shape != b.shape:  # a different embedding width: nothing to compare them by
        out.cosine_mean = out.cosine_p5 = out.cosine_min = 0.0
        return out
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)  # [N]
    out.cosine_mean = round(float(cos.mean()), 6)
    out.cosine_p5 = round(float(np.percentile(cos, 5)), 6)
    out.cosine_min = round(float(cos.min()), 6)
    return out

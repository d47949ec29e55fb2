"""Caption CIDEr-D against a stream's ground truth, the same for a caption per segment and one per window.

Each caption is scored against the reference captions of the true segment it overlaps most (the earlier
on a tie; none overlapping: not scored). Captions whose segment is ambiguous (every object still, more than
one in view: no model could name the subject, perception/data/stream.py) are left out and counted, as
everywhere captions are scored. CIDEr-D's idf comes from the references, so it is fixed by one corpus, the
streams' unambiguous true segments, whatever the captions: a mode that captions every window then scores
on the same scale as one that captions a segment once (with the scored captions as the corpus, the VLM's
repeats of a segment would change the idf).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from perception.data.stream import Segment
from perception.eval.bootstrap import Estimate, bootstrap_mean, bootstrap_statistic
from perception.eval.cider import CiderD


@dataclass(frozen=True)
class Span:
    """A caption's text and its span in stream seconds."""

    start_s: float
    end_s: float
    text: str


def overlap(a_start: float, a_end: float, t: Segment) -> float:
    """Seconds [a_start, a_end] shares with a true segment (<= 0: none)."""
    return min(a_end, t.end_s) - max(a_start, t.start_s)


def best_segment(c: Span, segments: Sequence[Segment]) -> int | None:
    """Index of the segment `c` overlaps most (the earlier on a tie), None when it overlaps none."""
    best, most = None, 0.0
    for i, t in enumerate(segments):
        o = overlap(c.start_s, c.end_s, t)
        if o > most:
            best, most = i, o
    return best


@dataclass
class Scored:
    per_caption: np.ndarray  # CIDEr-D of each scored caption
    stream: np.ndarray  # which stream each came from (the bootstrap's clusters)
    ambiguous: int  # captions whose segment is ambiguous, left out
    unmatched: int  # captions overlapping no true segment, left out

    def estimate(self) -> Estimate:
        """Mean over captions with a 95 % interval, streams resampled as clusters (a stream's captions
        share its segmenter's or model's mistakes, so they are not independent)."""
        return bootstrap_mean(self.per_caption, groups=self.stream)


def score_streams(captions: Sequence[Sequence[Span]], truths: Sequence[Sequence[Segment]]) -> Scored:
    """captions[k] scored against truths[k] (stream k's true segments), idf from every unambiguous truth."""
    refs: list[tuple[str, ...]] = []
    ref_of: dict[tuple[int, int], int] = {}
    for k, segs in enumerate(truths):
        for i, t in enumerate(segs):
            if not t.ambiguous:
                ref_of[(k, i)] = len(refs)
                refs.append(t.captions)
    texts, ref_idx, stream = [], [], []
    ambiguous = unmatched = 0
    for k, caps in enumerate(captions):
        for c in caps:
            i = best_segment(c, truths[k])
            if i is None:
                unmatched += 1
            elif (k, i) not in ref_of:
                ambiguous += 1
            else:
                texts.append(c.text)
                ref_idx.append(ref_of[(k, i)])
                stream.append(k)
    values = cider_against(texts, ref_idx, refs) if texts else np.zeros(0)
    return Scored(values, np.asarray(stream, dtype=int), ambiguous, unmatched)


def cider_against(texts: Sequence[str], ref_idx: Sequence[int], references: Sequence[Sequence[str]]) -> np.ndarray:
    """CIDEr-D of texts[i] against references[ref_idx[i]], idf from `references` (each item once).

    `CiderD.score` pairs candidate i with reference item i, so captions that share an item are scored in
    rounds: round r scores every item's r-th caption (items without one get an empty, ignored candidate)."""
    scorer = CiderD(references)
    out = np.zeros(len(texts))
    by_ref: dict[int, list[int]] = defaultdict(list)
    for i, j in enumerate(ref_idx):
        by_ref[j].append(i)
    for r in range(max(len(v) for v in by_ref.values())):
        cands = [""] * len(references)
        who = {j: idx[r] for j, idx in by_ref.items() if r < len(idx)}
        for j, i in who.items():
            cands[j] = texts[i]
        per_item = scorer.score(cands).per_item
        for j, i in who.items():
            out[i] = per_item[j]
    return out


def paired_difference(a: Scored, b: Scored, streams: int) -> Estimate:
    """Mean CIDEr of `a` minus `b` with a 95 % interval over the same streams resampled (paired)."""

    def sums(s: Scored) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.bincount(s.stream, weights=s.per_caption, minlength=streams),
            np.bincount(s.stream, minlength=streams).astype(float),
        )

    (sa, na), (sb, nb) = sums(a), sums(b)

    def stat(idx: np.ndarray) -> float:
        da, db = na[idx].sum(), nb[idx].sum()
        return sa[idx].sum() / da - sb[idx].sum() / db if da and db else float("nan")

    return bootstrap_statistic(streams, stat)

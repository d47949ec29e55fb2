"""`perception bench cost` scores each caption against the true segment it overlaps most, on one idf."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.cost.score import Span, best_segment, cider_against, paired_difference, score_streams
from perception.data.stream import ShapesStream
from perception.eval.cider import CiderD


@pytest.fixture(scope="module")
def segments():
    segs = ShapesStream(seed=0, split="heldout", duration_s=40).segments  # planned only, nothing rendered
    assert [i for i, t in enumerate(segs) if t.ambiguous] == [9] and segs[1].caption != segs[2].caption
    return segs


def test_a_caption_goes_to_the_segment_it_overlaps_most(segments):
    s1, s2 = segments[1], segments[2]
    assert best_segment(Span(s1.start_s, s1.end_s, "x"), segments) == 1
    assert best_segment(Span(s2.start_s - 0.2, s2.start_s + 1.0, "x"), segments) == 2  # 0.2 s on 1, 1 s on 2
    assert best_segment(Span(s2.start_s - 1.0, s2.start_s + 0.2, "x"), segments) == 1
    assert best_segment(Span(segments[-1].end_s + 1, segments[-1].end_s + 2, "x"), segments) is None


def test_score_streams_counts_what_it_leaves_out_and_fixes_the_idf(segments):
    s1, s2, s9 = segments[1], segments[2], segments[9]
    caps = [
        Span(s9.start_s, s9.end_s, s9.caption),  # ambiguous segment: left out
        Span(s1.start_s, s1.end_s, s1.caption),
        Span(s1.start_s, s1.end_s, "the green circle moves"),  # two captions of one segment
        Span(s2.start_s, s2.end_s, s2.caption),
        Span(1e6, 1e6 + 1, "far after the stream"),  # overlaps nothing
    ]
    scored = score_streams([caps], [segments])
    assert (scored.ambiguous, scored.unmatched, len(scored.per_caption)) == (1, 1, 3)
    refs = [t.captions for t in segments if not t.ambiguous]  # the idf corpus: every unambiguous segment
    scorer = CiderD(refs)
    i1, i2 = refs.index(s1.captions), refs.index(s2.captions)

    def alone(text: str, i: int) -> float:
        cands = [""] * len(refs)
        cands[i] = text
        return float(scorer.score(cands).per_item[i])

    expected = [alone(s1.caption, i1), alone("the green circle moves", i1), alone(s2.caption, i2)]
    assert scored.per_caption == pytest.approx(expected)
    assert expected[0] > expected[1]  # the true caption scores above a wrong one
    # the same captions scored directly pair by pair agree with the rounds
    assert cider_against(["a", "b"], [0, 0], [["a"], ["b"]]) == pytest.approx(
        [CiderD([["a"], ["b"]]).score(["a", ""]).per_item[0], CiderD([["a"], ["b"]]).score(["b", ""]).per_item[0]]
    )


def test_paired_difference_over_streams():
    from benchmarks.cost.score import Scored

    a = Scored(np.array([2.0, 2.0, 1.0]), np.array([0, 0, 1]), 0, 0)
    b = Scored(np.array([1.0, 0.0]), np.array([0, 1]), 0, 0)
    est = paired_difference(a, b, 2)
    assert est.value == pytest.approx(5 / 3 - 0.5) and est.n == 2 and est.lo <= est.value <= est.hi

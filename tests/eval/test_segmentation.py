"""Uniform and offline Ward segmentations."""

import numpy as np
import pytest

from perception.eval.segmentation import (
    Segment,
    decode_inputs,
    segments_from_boundaries,
    uniform_segments,
    ward_segments,
    ward_segments_for_interval,
)
from tests.eval.streams import planted_stream


def test_uniform_segments_tile_by_time_bins():
    times = np.arange(10) * 0.25  # 0 .. 2.25 s
    segs = uniform_segments(times, 1.0)
    assert segs == [Segment(0, 4), Segment(4, 8), Segment(8, 10)]
    assert [s.mid for s in segs] == [1, 5, 8]
    assert len(uniform_segments(times, 0.1)) == 10  # finer than the step rate: one per step


def test_uniform_rejects_bad_interval():
    with pytest.raises(ValueError, match="interval_s"):
        uniform_segments(np.arange(3.0), 0)


def test_segments_from_boundaries_validates():
    assert segments_from_boundaries([3, 1], 5) == [Segment(0, 1), Segment(1, 3), Segment(3, 5)]
    with pytest.raises(ValueError, match="boundaries"):
        segments_from_boundaries([0, 2], 5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ward_recovers_planted_boundaries(seed):
    planted = planted_stream(seed, duration_s=60.0, noise=0.5)
    segs = ward_segments(planted.stream.embs, len(planted.boundaries) + 1)
    found = [s.start for s in segs[1:]]
    assert found == planted.boundaries


def test_ward_segments_are_contiguous_and_counted():
    planted = planted_stream(3)
    segs = ward_segments_for_interval(planted.stream.embs, planted.stream.times, 2.0)
    duration = len(planted.stream.times) * 0.25
    assert len(segs) == round(duration / 2.0)
    assert segs[0].start == 0 and segs[-1].end == len(planted.stream.times)
    assert all(a.end == b.start for a, b in zip(segs, segs[1:]))


def test_decode_inputs_mid_and_mean():
    embs = np.arange(12, dtype=float).reshape(6, 2)
    times = np.arange(6) * 0.5
    segs = [Segment(0, 2), Segment(2, 6)]
    mid, t = decode_inputs(embs, times, segs, "mid")
    np.testing.assert_array_equal(mid, embs[[0, 3]])
    np.testing.assert_array_equal(t, [0.0, 1.5])
    mean, _ = decode_inputs(embs, times, segs, "mean")
    np.testing.assert_allclose(mean, [[1.0, 2.0], [7.0, 8.0]])
    with pytest.raises(ValueError, match="pooling"):
        decode_inputs(embs, times, segs, "max")

"""Selective-decoding curve on synthetic streams with a nearest-planted-caption decoder."""

import numpy as np
import pytest

from perception.eval.selective import (
    CurvePoint,
    matched_interval,
    nearest_output,
    plot_curve,
    selective_decoding_curve,
)
from tests.eval.streams import CAPTIONS, planted_stream


def test_nearest_output_prefers_earlier_on_ties():
    out = np.array([1.0, 2.0, 4.0])
    idx = nearest_output(np.array([0.0, 1.5, 1.6, 3.0, 9.0]), out)
    np.testing.assert_array_equal(idx, [0, 0, 1, 1, 2])


def _pt(interval, cider):
    return CurvePoint("online", "mid", interval, 0.0, 1, interval, cider)


def test_matched_interval_rule():
    curve = [_pt(0.5, 8.0), _pt(1.0, 9.0), _pt(2.0, 9.0), _pt(4.0, 7.0), _pt(8.0, 9.5)]
    interval, how = matched_interval(curve, 8.5)
    # first fall below 8.5 after reaching it: between 2 s (9.0) and 4 s (7.0), a quarter of the way in log
    assert how == "interpolated"
    assert interval == pytest.approx(2.0 * 2**0.25)
    assert matched_interval(curve, 10.0) == (None, "not_reached")
    assert matched_interval(curve[:3], 8.5) == (2.0, "lower_bound")


def test_tolerance_is_validated_and_reported():
    planted = planted_stream(12, duration_s=30.0, noise=0.4)
    with pytest.raises(ValueError, match="tolerance"):
        selective_decoding_curve([planted.stream], lambda e: ["x"] * len(e), intervals_s=(1.0,), tolerance=1.0)
    res = selective_decoding_curve([planted.stream], lambda e: ["x"] * len(e), intervals_s=(1.0, 4.0), tolerance=0.0)
    assert res.to_dict()["tolerance"] == 0.0


@pytest.fixture(scope="module")
def curve():
    planted = [planted_stream(s, duration_s=90.0, dim=16, noise=0.4) for s in (10, 11)]
    # the streams draw their own centroid tables: the decoder knows both (row r is CAPTIONS[r % n])
    centroids = np.concatenate([p.centroids for p in planted])
    calls = []

    def decode_union(embs):
        d = ((embs[:, None, :] - centroids[None]) ** 2).sum(-1)  # (N, 2 * n_captions)
        calls.append(len(embs))
        return [CAPTIONS[i % len(CAPTIONS)] for i in d.argmin(axis=1)]

    result = selective_decoding_curve([p.stream for p in planted], decode_union)
    return result, calls


def test_curve_covers_the_interval_range(curve):
    result, _ = curve
    for method in ("uniform", "offline", "online"):
        for pooling in ("mid", "mean"):
            pts = result.curve(method, pooling)
            assert min(p.avg_interval_s for p in pts) <= 0.8
            assert max(p.avg_interval_s for p in pts) >= 15.0


def test_segmenters_beat_uniform_at_equal_rate(curve):
    result, _ = curve
    for pooling in ("mid", "mean"):
        uniform = result.curve("uniform", pooling)
        for method in ("offline", "online"):
            pts = result.curve(method, pooling)
            xs = np.log([p.avg_interval_s for p in pts])
            ys = [p.cider for p in pts]
            # compare where both curves are measured, at 3-8 s (true segments last 1-8 s)
            for u in (p for p in uniform if 3.0 <= p.avg_interval_s <= 8.0):
                assert np.interp(np.log(u.avg_interval_s), xs, ys) > u.cider, (method, pooling, u)


def test_reduction_is_reported_and_above_uniform(curve):
    result, _ = curve
    assert result.reference_interval_s == 1.0
    assert result.reference_cider > 5.0
    for key in ("offline", "online", "offline_mean", "online_mean"):
        assert result.matched_how[key] == "interpolated"
        # perfect segmentation bounds the reduction near the mean segment length, 4.5 s
        assert 2.0 < result.reduction_at_matched_quality[key] < 6.0
    d = result.to_dict()
    assert set(d["reduction_at_matched_quality"]) == {"offline", "online", "offline_mean", "online_mean"}


def test_each_distinct_input_is_decoded_once(curve):
    result, calls = curve
    assert sum(calls) < sum(p.n_decodes for p in result.points)


def test_plot_writes_png(curve, tmp_path):
    result, _ = curve
    out = plot_curve(result, tmp_path / "sub" / "curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

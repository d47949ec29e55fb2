"""Selective-decoding protocol: envelope and crossing rule, bootstrap over streams, oracle row, and the
curve on synthetic streams with a nearest-planted-caption decoder."""

import json
from dataclasses import replace

import numpy as np
import pytest

from perception.eval.selective import (
    HEADLINE,
    NON_INFERIORITY_MARGIN,
    area_ratio,
    crossing,
    envelope,
    nearest_output,
    plot_curve,
    selective_decoding_curve,
    stream_weights,
)
from tests.eval.streams import CAPTIONS, nearest_caption_decoder, planted_stream

KEYS = {"offline_mid", "online_mid", "offline_mean", "online_mean"}


def test_nearest_output_prefers_earlier_on_ties():
    out = np.array([1.0, 2.0, 4.0])
    idx = nearest_output(np.array([0.0, 1.5, 1.6, 3.0, 9.0]), out)
    np.testing.assert_array_equal(idx, [0, 0, 1, 1, 2])


def test_envelope_of_a_non_monotone_curve_is_the_best_at_this_interval_or_longer():
    np.testing.assert_array_equal(envelope([5.0, 9.0, 7.0, 8.0, 2.0]), [9.0, 9.0, 8.0, 8.0, 2.0])
    np.testing.assert_array_equal(envelope([1.0, 2.0, 3.0]), [3.0, 3.0, 3.0])


# raw CIDEr dips at 2 s (7 < target) and recovers; its envelope is [10, 10, 9, 9, 6, 6]
PLANTED_X = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
PLANTED_C = [8.0, 10.0, 7.0, 9.0, 5.0, 6.0]


def test_crossing_on_a_planted_curve_is_the_planted_value():
    # envelope 9 at 4 s, 6 at 8 s: target 7 lies 2/3 of the way down, so x = 4 * 2^(2/3) in log space
    # (the raw points would give 4 * 2^(1/2); a first-drop rule would stop between 1 and 2 s)
    x, how = crossing(PLANTED_X, PLANTED_C, 7.0)
    assert how == "interpolated"
    assert x == pytest.approx(4.0 * 2 ** (2 / 3), rel=1e-12)
    perm = [3, 0, 5, 1, 4, 2]  # the order the points come in does not matter
    assert crossing(np.array(PLANTED_X)[perm], np.array(PLANTED_C)[perm], 7.0) == (x, how)


def test_crossing_not_reached_and_lower_bound():
    assert crossing(PLANTED_X, PLANTED_C, 10.5) == (None, "not_reached")
    assert crossing(PLANTED_X, PLANTED_C, 5.5) == (16.0, "lower_bound")
    assert crossing(PLANTED_X, PLANTED_C, 9.5) == (pytest.approx(2**0.5), "interpolated")  # half-way 10 -> 9


def test_area_ratio():
    assert area_ratio(PLANTED_X, PLANTED_C, PLANTED_X, PLANTED_C) == 1.0
    # on the common range [1, 4] s: a line from 4 to 0 in log x has twice the area of a constant 1
    assert area_ratio([1.0, 4.0], [4.0, 0.0], [0.5, 1.0, 2.0, 4.0, 8.0], [1.0] * 5) == pytest.approx(2.0)
    assert area_ratio([1.0, 2.0], [1.0, 1.0], [4.0, 8.0], [1.0, 1.0]) is None  # no common range


def test_stream_weights_row_zero_is_the_full_sample():
    w = stream_weights(5, resamples=7, seed=3)
    assert w.shape == (8, 5)
    np.testing.assert_array_equal(w[0], np.ones(5))
    np.testing.assert_array_equal(w.sum(axis=1), np.full(8, 5.0))
    np.testing.assert_array_equal(w, stream_weights(5, resamples=7, seed=3))  # fixed seed


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
            assert result.area_ratio[f"{method}_{pooling}"]["value"] > 1.0


def test_points_keep_per_annotation_scores(curve):
    result, _ = curve
    n_ann = 41  # true segments of the two planted streams
    for p in result.points:
        assert p.per_annotation.shape == (n_ann,)
        assert p.cider == pytest.approx(p.per_annotation.mean())
        assert p.decodes_per_stream.sum() == p.n_decodes


def test_reference_is_uniform_at_one_second_with_the_same_pooling(curve):
    result, _ = curve
    for pooling in ("mid", "mean"):
        ref = next(p for p in result.curve("uniform", pooling) if p.target_interval_s == 1.0)
        assert result.reference_cider[pooling] == ref.cider


def test_headline_reduction_with_a_bootstrap_interval(curve):
    result, _ = curve
    assert result.headline == HEADLINE == "online_mean"
    assert result.margin == NON_INFERIORITY_MARGIN == 0.01
    assert set(result.reduction) == KEYS
    for key, red in result.reduction.items():
        lo, hi = red["ci95"]
        assert red["how"] == "interpolated", key
        # perfect segmentation bounds the reduction near the mean segment length, 4.5 s
        assert 2.0 < red["value"] < 6.0, key
        assert lo <= red["value"] <= hi, key
        assert red["n"] == 2
        assert red["draws_not_reached"] == 0
    lo, hi = result.reduction[HEADLINE]["ci95"]
    assert lo < hi  # the two streams differ: the draws do too


def test_null_reduction_reads_uniform_against_its_own_reference(curve):
    result, _ = curve
    assert set(result.null_reduction) == {"uniform_mid", "uniform_mean"}
    for pooling in ("mid", "mean"):
        null = result.null_reduction[f"uniform_{pooling}"]
        # the reference point matches itself, so uniform reaches at least 1 s; segments of 1-8 s keep it
        # perfect a little longer, but well short of what segmenting buys
        assert 1.0 <= null["value"] < result.reduction[f"online_{pooling}"]["value"]


def test_to_dict_is_json_and_names_the_protocol(curve):
    result, _ = curve
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(d) == {
        "margin",
        "reference_interval_s",
        "reference_cider",
        "headline",
        "reduction",
        "area_ratio",
        "null_reduction",
        "oracle",
        "perfect_segmentation_bound",
        "online_config",
        "resamples",
        "points",
    }
    assert set(d["reduction"]) == set(d["area_ratio"]) == KEYS
    assert set(d["reduction"][HEADLINE]) == {"value", "ci95", "n", "how", "draws_not_reached", "draws_lower_bound"}
    assert d["resamples"] == 1000
    assert "per_annotation" not in d["points"][0] and "cider" in d["points"][0]


def test_oracle_with_a_perfect_decoder_reaches_the_reference(curve):
    result, _ = curve
    oracle = result.oracle
    assert oracle["decodes"] == 41
    assert oracle["cider"]["value"] >= result.reference_cider["mean"]
    assert oracle["vs_reference_mean"]["value"] >= 1.0
    # the planted spans tile the streams: duration / true segments = mean true-segment length
    assert oracle["avg_interval_s"] == pytest.approx(result.perfect_segmentation_bound * result.reference_interval_s)
    assert 3.0 < result.perfect_segmentation_bound < 6.0


def test_each_distinct_input_is_decoded_once(curve):
    result, calls = curve
    # the oracle's one batch of true-segment means comes on top of the sweep's distinct inputs
    assert sum(calls) - result.oracle["decodes"] < sum(p.n_decodes for p in result.points)


def test_plot_writes_png(curve, tmp_path):
    result, _ = curve
    out = plot_curve(result, tmp_path / "sub" / "curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


SHORT = (1.0, 2.0, 4.0, 8.0)


def test_identical_streams_give_a_zero_width_interval():
    planted = planted_stream(12, duration_s=40.0, noise=0.6)
    result = selective_decoding_curve(
        [planted.stream] * 3, nearest_caption_decoder(planted.centroids), intervals_s=SHORT, resamples=200
    )
    # a bootstrap over annotations would still vary here; one over streams draws the same data every time
    ests = [*result.reduction.values(), *result.null_reduction.values(), *result.area_ratio.values()]
    for est in [*ests, result.oracle["cider"]]:
        lo, hi = est["ci95"]
        assert est["value"] is not None
        assert hi - lo == pytest.approx(0.0, abs=1e-9)
        assert lo == pytest.approx(est["value"], rel=1e-9)


def test_oracle_needs_spans_and_a_zero_reference_is_flagged():
    planted = planted_stream(12, duration_s=30.0, noise=0.4)
    stream = replace(planted.stream, annotations=[replace(a, span=None) for a in planted.stream.annotations])
    result = selective_decoding_curve([stream], lambda e: ["x"] * len(e), intervals_s=(1.0, 4.0), resamples=10)
    assert result.oracle is None and result.perfect_segmentation_bound is None
    assert result.reference_cider == {"mid": 0.0, "mean": 0.0}
    for red in result.reduction.values():
        assert red["value"] is None and red["how"] == "reference_cider_zero"
    assert all(a["value"] is None for a in result.area_ratio.values())  # uniform's area is 0 too
    json.dumps(result.to_dict(), allow_nan=False)

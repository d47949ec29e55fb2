"""The operating-point headline (paired difference at fixed decode rates): the estimator pinned on planted
curves, and the whole report on synthetic streams with planted boundaries."""

import json

import numpy as np
import pytest

from perception.eval.operating_point import (
    OPERATING_MARGIN,
    RateRow,
    judge,
    operating_point_report,
    overlap,
    summary_lines,
)
from tests.eval.streams import CAPTIONS, planted_stream

RNG = np.random.default_rng(0)
REF = 1.0  # reference CIDEr


def rows(means: dict[float, float], spread: float) -> list[RateRow]:
    """Planted draws: row 0 the mean, 1000 draws normal around it with the given spread."""
    out = []
    for rate, mean in means.items():
        draws = np.concatenate([[mean], mean + spread * RNG.standard_normal(1000)])
        out.append(RateRow("online", rate, rate, 100, draws))
    return out


def test_known_crossing_picks_the_largest_non_inferior_reduction():
    verdict = judge(rows({0.25: -0.30, 0.35: -0.01, 0.5: 0.0}, spread=0.005), REF)
    assert verdict["headline"]["rate_hz"] == 0.35
    assert verdict["headline"]["reduction"] == pytest.approx(1 / 0.35)
    assert [r["non_inferior"] for r in verdict["rows"]] == [False, True, True]


def test_flat_curve_reaches_the_lowest_rate_tested():
    verdict = judge(rows({0.25: 0.0, 0.35: 0.0, 0.5: 0.0}, spread=0.005), REF)
    assert verdict["headline"]["reduction"] == pytest.approx(4.0)


def test_noisy_curve_has_no_headline_whatever_its_mean():
    verdict = judge(rows({0.25: 0.02, 0.35: 0.02, 0.5: 0.02}, spread=0.2), REF)
    assert verdict["headline"] is None
    assert all(r["diff"]["ci95"][0] < -OPERATING_MARGIN * REF for r in verdict["rows"])


def test_margin_scales_with_the_reference():
    planted = {0.25: -0.04, 0.35: -0.04, 0.5: -0.04}
    assert judge(rows(planted, spread=0.001), reference_cider=1.0)["headline"] is not None  # -4 % of 1.0
    assert judge(rows(planted, spread=0.001), reference_cider=0.5)["headline"] is None  # -8 % of 0.5


def test_overlap():
    assert overlap([[0, 2], [1, 3], [1.5, 1.6]])
    assert not overlap([[0, 1], [2, 3]])


@pytest.fixture(scope="module")
def report():
    planted = [planted_stream(s, duration_s=90.0, dim=16, noise=0.4) for s in range(6)]
    centroids = np.concatenate([p.centroids for p in planted])

    def decode(embs):
        d = ((embs[:, None, :] - centroids[None]) ** 2).sum(-1)
        return [CAPTIONS[i % len(CAPTIONS)] for i in d.argmin(axis=1)]

    return operating_point_report([p.stream for p in planted], decode, seed_sets=[0, 0, 1, 1, 2, 2], resamples=200)


def test_segmenters_beat_the_null_row_on_planted_streams(report):
    table = report["all"]
    for method in ("online", "offline"):
        for seg, uni in zip(table[method]["rows"], table["uniform"]["rows"], strict=True):
            assert seg["diff"]["value"] > uni["diff"]["value"], (method, seg["rate_hz"])
    assert table["online"]["headline"] is not None
    null = table["uniform"]["headline"]
    assert null is None or null["reduction"] < table["online"]["headline"]["reduction"]


def test_rates_are_achieved_and_sets_are_reported(report):
    for row in report["all"]["online"]["rows"]:
        assert row["achieved_hz"] == pytest.approx(row["rate_hz"], rel=0.25)
    assert set(report["seed_sets"]) == {"0", "1", "2"}
    assert sum(t["streams"] for t in report["seed_sets"].values()) == 6
    assert set(report["sets_overlap"]) == {"online", "offline", "uniform"}
    json.dumps(report)  # JSON-ready
    text = "\n".join(summary_lines(report))
    assert "set 2" in text and "online" in text


def test_seed_sets_must_cover_every_stream():
    planted = planted_stream(1, duration_s=30.0)
    with pytest.raises(ValueError, match="one entry per stream"):
        operating_point_report([planted.stream], lambda e: ["x"] * len(e), seed_sets=[0, 1], resamples=10)

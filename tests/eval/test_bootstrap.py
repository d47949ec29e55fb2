"""Bootstrap intervals: they cover what they should, and collapse when there is nothing to resample."""

import numpy as np
import pytest

from perception.eval.bootstrap import accuracy, bootstrap_mean, bootstrap_statistic, interval, per_key


def test_interval_of_a_known_bernoulli_sample_covers_its_mean_and_has_the_textbook_width():
    rng = np.random.default_rng(1)
    x = rng.random(3000) < 0.9
    est = bootstrap_mean(x)
    assert est.lo < x.mean() < est.hi and est.n == 3000
    half = 1.96 * np.sqrt(0.9 * 0.1 / 3000)  # normal approximation: about 0.011
    assert est.hi - est.lo == pytest.approx(2 * half, rel=0.15)


def test_many_samples_of_a_known_p_are_covered_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    hits = 0
    for k in range(100):
        est = bootstrap_mean(rng.random(400) < 0.8, resamples=400, seed=k)
        hits += est.lo <= 0.8 <= est.hi
    assert 88 <= hits <= 100, hits


def test_groups_are_resampled_whole():
    # two groups, one all right, one all wrong: group resampling spreads the interval to ~[0, 1]
    values = np.array([1.0] * 50 + [0.0] * 50)
    grouped = bootstrap_mean(values, groups=[0] * 50 + [1] * 50, resamples=500)
    flat = bootstrap_mean(values, resamples=500)
    assert grouped.n == 2 and flat.n == 100
    assert grouped.hi - grouped.lo > 0.9 > flat.hi - flat.lo
    # identical groups: nothing to resample, zero width
    same = bootstrap_mean(np.tile([1.0, 0.0, 1.0], 10), groups=np.repeat(np.arange(10), 3))
    assert same.lo == same.hi == pytest.approx(2 / 3)


def test_json_form_and_per_key():
    d = accuracy([True, False, True, True])
    assert set(d) == {"value", "ci95", "n"} and d["value"] == 0.75 and d["n"] == 4
    assert d["ci95"][0] <= 0.75 <= d["ci95"][1]
    keys = per_key([True, False, True], ["b", "a", "b"])
    assert list(keys) == ["a", "b"] and keys["a"]["value"] == 0.0 and keys["b"]["value"] == 1.0


def test_statistic_bootstrap_drops_undefined_draws_and_refuses_empty_input():
    est = bootstrap_statistic(10, lambda idx: float("nan") if 0 not in idx else float(len(set(idx))))
    assert np.isfinite(est.lo) and est.value == 10
    assert all(np.isnan(interval([float("nan")])))  # no defined draw: no interval
    with pytest.raises(ValueError):
        bootstrap_mean([])

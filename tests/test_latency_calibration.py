"""Validation maths on known numbers, and the calibration fit."""

from __future__ import annotations

import numpy as np
import pytest

from nasforge.latency import calibration as cal


def test_mape_and_within_on_known_numbers():
    true = np.array([100.0, 100.0, 200.0, 50.0])
    pred = np.array([110.0, 90.0, 230.0, 50.0])
    assert cal.mape(pred, true) == pytest.approx((10 + 10 + 15 + 0) / 4)
    assert cal.within(pred, true) == pytest.approx(3 / 4)  # exactly 10% counts as within
    assert cal.within(pred, true, tol=0.2) == 1.0


def test_kendall_tau_known_values():
    assert cal.kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert cal.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one swapped pair out of 6: (5 - 1) / 6
    assert cal.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # tau-b with a tie in b: pairs 6, concordant 5, discordant 0, tied-in-b 1 -> 5 / sqrt(6 * 5)
    assert cal.kendall_tau([1, 2, 3, 4], [1, 2, 3, 3]) == pytest.approx(5 / np.sqrt(30))


def test_kendall_tau_matches_scipy():
    from scipy import stats  # scikit-learn's dependency: always installed with nasforge
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 10, 60), rng.integers(0, 10, 60)
    assert cal.kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)


def _features(sums, blocks, **extra):
    n = len(sums)
    f = {"sum_ms": sums, "net_ms": sums, "weight_mb": np.zeros(n), "act_mb": np.zeros(n), "blocks": blocks,
         "one": np.ones(n)}
    return {**f, **extra}


def test_legacy_linear_fit_recovers_known_calibration_and_cv_is_out_of_fold():
    rng = np.random.default_rng(0)
    sums = rng.uniform(1, 5, 50)
    blocks = rng.integers(10, 25, 50).astype(float)
    measured = 0.8 * sums - 0.01 * blocks + 0.3
    c = cal.fit_linear(sums, blocks, measured)
    assert c["kind"] == cal.LEGACY_KIND
    assert (c["a"], c["b"], c["c"]) == pytest.approx((0.8, -0.01, 0.3), abs=1e-9)
    f = _features(sums, blocks)
    assert cal.apply(c, f) == pytest.approx(measured)  # the old kind still applies (tables made before)

    def linear(g, m):
        return cal.fit_linear(g["sum_ms"], g["blocks"], m)

    assert cal.metrics(cal.cross_validated(f, measured, fitter=linear), measured)["mape"] < 1e-6
    noisy = measured * rng.uniform(0.8, 1.2, 50)
    cv = cal.mape(cal.cross_validated(f, noisy, fitter=linear), noisy)
    insample = cal.mape(cal.apply(linear(f, noisy), f), noisy)
    assert cv > insample  # held-out error is honest: larger than the in-sample one


def test_legacy_fit_with_constant_block_count_is_not_singular():
    sums = np.array([1.0, 2.0, 3.0])
    c = cal.fit_linear(sums, np.array([5.0, 5.0, 5.0]), 2 * sums + 1)
    assert (c["a"], c["b"], c["c"]) == pytest.approx((2.0, 0.0, 1.0))
    # no calibration: the plain block sums, whatever the other features hold (either call form)
    f = _features(sums, np.array([5.0, 5.0, 5.0]), net_ms=3 * sums + 1)
    np.testing.assert_array_equal(cal.apply(None, f), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(cal.apply(None, sums, np.array([5.0, 5.0, 5.0])), [1.0, 2.0, 3.0])

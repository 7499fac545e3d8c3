"""The leaderboard's statistics against values computed by hand on tiny examples."""

import math

import numpy as np
import pytest

from moabench.evaluation.stats import (
    Interval,
    holm,
    improvement_interval,
    iqm,
    iqm_interval,
    paired_t_test,
    performance_profile,
    probability_of_improvement,
    profile_interval,
    stratified_interval,
    t_interval,
)

T_975_2 = 4.302652729749462  # t_{0.975} with 2 degrees of freedom (4.303 in the tables)
T_975_9 = 2.262157162798205  # ... with 9 (2.262)


def test_t_interval_by_hand():
    # mean 2, s = 1, s / sqrt(3) = 0.57735: 2 +- 4.3027 * 0.57735 = 2 +- 2.48414
    interval = t_interval([1.0, 2.0, 3.0])
    assert interval.mean == 2.0 and interval.n == 3
    assert interval.low == pytest.approx(2 - T_975_2 / math.sqrt(3))
    assert interval.high == pytest.approx(2 + T_975_2 / math.sqrt(3))
    assert (interval.low, interval.high) == pytest.approx((-0.484138, 4.484138), abs=1e-6)
    # ten values 0..9: mean 4.5, s = sqrt(55/6) = 3.02765, s / sqrt(10) = 0.957427
    ten = t_interval(np.arange(10.0))
    assert ten.high - ten.mean == pytest.approx(T_975_9 * math.sqrt(55 / 6) / math.sqrt(10))


def test_t_interval_of_one_value_has_no_interval_and_equal_values_a_point():
    single = t_interval([0.5, math.nan])
    assert single.mean == 0.5 and single.n == 1 and math.isnan(single.low)
    assert str(single) == "0.5"
    flat = t_interval([0.3, 0.3, 0.3])
    assert (flat.low, flat.high) == (0.3, 0.3)
    assert str(t_interval([])) == "-"


def test_interval_formatting():
    interval = Interval(0.12345, 0.1, 0.2, 3)
    assert str(interval) == "0.1235 [0.1, 0.2]"
    assert f"{interval:.2f}" == "0.12 [0.10, 0.20]"


def test_paired_t_test_by_hand():
    # differences 2, 3, 2: mean 7/3, s = sqrt(1/3), t = (7/3) / (sqrt(1/3) / sqrt(3)) = 7;
    # with 2 degrees of freedom P(|T| > t) = 1 - t / sqrt(t^2 + 2) = 1 - 7 / sqrt(51)
    test = paired_t_test([3.0, 5.0, 4.0], [1.0, 2.0, 2.0])
    assert test.p_value == pytest.approx(1 - 7 / math.sqrt(51))
    assert test.difference.mean == pytest.approx(7 / 3)
    assert test.difference.high - test.difference.mean == pytest.approx(T_975_2 / 3)
    # unpaired, the same numbers would overlap: it is the pairing that separates them
    assert t_interval([3.0, 5.0, 4.0]).low < t_interval([1.0, 2.0, 2.0]).high


def test_paired_t_test_without_spread_or_pairs():
    assert paired_t_test([1.0, 2.0], [1.0, 2.0]).p_value == 1.0  # identical: no difference
    assert paired_t_test([2.0, 3.0], [1.0, 2.0]).p_value == 0.0  # always exactly 1 better
    assert math.isnan(paired_t_test([2.0], [1.0]).p_value)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 (m = 3): 3 x 0.01 = 0.03; 2 x 0.03 = 0.06; max(1 x 0.04, 0.06)
    adjusted = holm([0.01, 0.04, 0.03])
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06])
    # a comparison that could not be made stays nan and does not count in m
    with_nan = holm([0.04, math.nan, 0.01])
    assert with_nan[0] == pytest.approx(0.04) and with_nan[2] == pytest.approx(0.02)
    assert math.isnan(with_nan[1])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]  # capped at 1
    assert holm([]).tolist() == []


def test_iqm_by_hand():
    # 8 values: drop int(8/4) = 2 at each end, mean of 3, 4, 5, 6
    assert iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)
    assert iqm([1, 2, 3, 4, 5, 6, 7, 100.0]) == pytest.approx(4.5)  # the outlier is trimmed
    assert iqm([1, 2, 3, 4, 5, 6, 7, 100.0]) != np.mean([1, 2, 3, 4, 5, 6, 7, 100.0])


def test_probability_of_improvement_by_hand():
    # task 1: x = 1, 3 against y = 2, 2: 3 beats both 2s, 1 beats neither -> 2/4
    # task 2: x = 5, 6 against y = 1, 6: 5>1, 5<6, 6>1, 6=6 (half) -> 2.5/4
    x = [np.array([1.0, 3.0]), np.array([5.0, 6.0])]
    y = [np.array([2.0, 2.0]), np.array([1.0, 6.0])]
    assert probability_of_improvement(x, y) == pytest.approx((0.5 + 0.625) / 2)
    assert probability_of_improvement(y, x) == pytest.approx(1 - (0.5 + 0.625) / 2)


def test_performance_profile_by_hand():
    # task 1 runs 0.2, 0.8; task 2 runs 0.5, 0.5, 0.9, 0.1. Above 0: 1 and 1. Above 0.5:
    # 1/2 and 1/4 (0.5 is not above 0.5). Tasks weigh the same: (1/2 + 1/4) / 2.
    strata = [np.array([0.2, 0.8]), np.array([0.5, 0.5, 0.9, 0.1])]
    profile = performance_profile(strata, np.array([0.0, 0.5, 1.0]))
    assert profile.tolist() == pytest.approx([1.0, 0.375, 0.0])


def test_the_bootstrap_resamples_within_each_task():
    """Each task constant (1, 1, 1 and 3, 3, 3): a stratified resample always holds three of
    each, so the IQM never moves; resampling the six values together would move it."""
    strata = [np.ones(3), np.full(3, 3.0)]
    interval = iqm_interval(strata)
    assert interval.mean == pytest.approx(2.0)
    assert (interval.low, interval.high) == pytest.approx((2.0, 2.0))
    pooled = iqm_interval([np.array([1.0, 1.0, 1.0, 3.0, 3.0, 3.0])])
    assert pooled.low < 2.0 < pooled.high


def test_bootstrap_intervals_are_fixed_and_cover_the_estimate():
    rng = np.random.default_rng(1)
    x = [rng.normal(size=10) for _ in range(3)]
    y = [rng.normal(size=10) + 0.5 for _ in range(3)]
    first, again = iqm_interval(x), iqm_interval(x)
    assert first == again  # fixed seed
    assert first.low <= first.mean <= first.high and first.n == 30
    better = improvement_interval(y, x)
    assert 0.5 < better.mean and better.low <= better.mean <= better.high and better.n == 3
    taus = np.linspace(0, 1, 5)
    fraction, low, high = profile_interval(x, taus)
    assert np.all(low <= fraction + 1e-12) and np.all(fraction <= high + 1e-12)


def test_no_bootstrap_interval_from_a_task_with_one_run():
    assert stratified_interval(lambda *s, axis: np.mean(s[0], axis=axis), [np.ones(1)]) is None
    single = iqm_interval([np.array([0.5]), np.array([0.1, 0.2])])
    assert math.isnan(single.low) and single.mean == pytest.approx(iqm([0.5, 0.1, 0.2]))

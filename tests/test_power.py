"""The power analysis against known sample sizes and hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest
from test_leaderboard import build, write_front

from moabench.evaluation import power
from moabench.evaluation.power import (
    pooled_residuals,
    seeds_needed,
    sign_flip_power,
    t_power,
    top_differences,
)
from moabench.evaluation.stats import hodges_lehmann, sign_flip_test, sign_flip_tests


@pytest.mark.parametrize("d, n", [(0.5, 34), (0.8, 15), (1.0, 10)])
def test_paired_t_seed_counts_are_the_classical_ones(d, n):
    # Cohen (1988) / G*Power, paired t-test, two-sided 0.05, 80% power: d = 0.5 needs 34 pairs
    assert t_power(d, 1.0, n) >= 0.8 > t_power(d, 1.0, n - 1)
    assert seeds_needed(lambda k: t_power(d, 1.0, k)) == n
    assert seeds_needed(lambda k: t_power(0.01 * d, 0.01, k)) == n  # only d = effect / sd counts


def test_t_power_at_no_effect_is_the_level_and_noiseless_differences_are_found():
    assert t_power(0.0, 1.0, 12) == pytest.approx(0.05)
    assert t_power(0.01, 0.0, 2) == 1.0
    assert t_power(0.5, 1.0, 1) == 0.0


def test_seeds_needed_doubles_then_bisects_to_the_first_n_that_reaches_the_target(monkeypatch):
    assert seeds_needed(lambda n: float(n >= 37)) == 37
    assert seeds_needed(lambda n: float(n >= 37), start=6) == 37
    assert seeds_needed(lambda n: 1.0, start=6) == 6
    monkeypatch.setattr(power, "MOST_SEEDS", 100)
    assert seeds_needed(lambda n: float(n >= 101)) is None


def test_the_batched_sign_flip_test_is_the_single_one_per_row():
    rows = np.random.default_rng(3).normal(0.3, 1.0, (7, 9))
    rows[0, :3] = rows[0, 3]  # ties
    assert sign_flip_tests(rows) == pytest.approx([sign_flip_test(r) for r in rows])


def test_the_sign_flip_test_needs_six_seeds_at_least():
    # n equal positive differences reach p = 2 / 2^n: 0.0625 at 5 seeds, 0.03125 at 6
    assert sign_flip_power(np.zeros(4), 0.01, 5) == 0.0
    assert sign_flip_power(np.zeros(4), 0.01, 6) == 1.0
    assert seeds_needed(lambda n: sign_flip_power(np.zeros(4), 0.01, n)) == 6


def test_sign_flip_power_matches_the_t_test_on_normal_noise_and_beats_it_on_an_outlier():
    # normal noise: the signed-rank test's efficiency relative to the t-test is 3/pi = 0.955
    # (Hodges & Lehmann 1956), so it needs about as many seeds (t: 10 for d = 1)
    normal = np.random.default_rng(0).standard_normal(2000)
    normal = (normal - normal.mean()) / normal.std()
    assert 9 <= seeds_needed(lambda n: sign_flip_power(normal, 1.0, n), 6) <= 12
    # nine equal differences and one large one (cagrad-toy's shape): SD 0.32, so the t-test
    # needs hundreds of seeds for 0.05, where signs and ranks see steady wins from 6 seeds on
    outlier = np.array([0.0] * 9 + [1.0])
    residuals, sd = pooled_residuals([outlier], hodges_lehmann)
    assert hodges_lehmann(outlier) == 0.0 and sd == pytest.approx(0.316, abs=1e-3)
    assert seeds_needed(lambda n: t_power(0.05, sd, n)) > 200
    assert seeds_needed(lambda n: sign_flip_power(residuals, 0.05, n), 6) == 6


def test_top_differences_pair_the_three_best_means_on_shared_seeds():
    values = np.array(
        [[1.0, 5.0, 3.0, 4.0], [2.0, 6.0, 3.5, np.nan], [3.0, 7.0, 4.5, 5.0]]
    )  # means 2, 6, 3.67, 4.5: the top three are columns 1, 3, 2
    sets = top_differences(values)
    assert [list(d) for d in sets] == [[1.0, 2.0], [2.0, 2.5, 2.5], [1.0, 0.5]]


def test_pooled_residuals_by_hand():
    # [1, 3] centred [-1, 1]; [2, 2, 5] centred [-1, -1, 2]: SS 2 + 6 on 1 + 2 degrees of freedom
    residuals, sd = pooled_residuals([np.array([1.0, 3.0]), np.array([2.0, 2.0, 5.0])])
    assert list(residuals) == [-1.0, 1.0, -1.0, -1.0, 2.0]
    assert sd == pytest.approx(math.sqrt(8 / 3))
    # about the Hodges-Lehmann estimates instead: 2 (Walsh averages 1, 2, 3) and 2.75 (2, 2,
    # 3.5, 2, 3.5, 5); the SD stays the spread about the means
    residuals, sd_about_means = pooled_residuals(
        [np.array([1.0, 3.0]), np.array([2.0, 2.0, 5.0])], hodges_lehmann
    )
    assert list(residuals) == [-1.0, 1.0, -0.75, -0.75, 2.25] and sd_about_means == sd
    assert math.isnan(pooled_residuals([])[1])


def test_the_leaderboard_pools_the_top_three_per_paradigm(tmp_path):
    """Three algorithms' fronts of one point (a, 0), HV 1.1 (1.1 - a), on 8 seeds; a fourth,
    worst one is not among the top three. The union reference is the best point (0, 0): HV
    1.21, so each score is (1.1 - a) / 1.1."""
    results = tmp_path / "results"
    shifts = {
        "a": np.zeros(8),
        "b": np.array([0.01, 0.03, 0.0, 0.02, 0.01, 0.04, 0.0, 0.02]),
        "c": np.array([0.05, 0.02, 0.06, 0.03, 0.0, 0.05, 0.04, 0.06]),
        "d": np.full(8, 0.5),
    }
    for name, shift in shifts.items():
        for seed, a in enumerate(shift):
            write_front(results, name, seed, [[a, 0.0]] * 3)
    build(results, tmp_path / "board", plots=False)
    rows = pd.read_csv(tmp_path / "board" / "power.csv")
    assert list(rows["effect"]) == list(power.EFFECTS) and set(rows["group"]) == {"analytic"}
    score = {name: (1.1 - shift) / 1.1 for name, shift in shifts.items()}
    sets = [score["a"] - score["b"], score["a"] - score["c"], score["b"] - score["c"]]
    sd = pooled_residuals(sets)[1]
    assert rows["sd"].tolist() == pytest.approx([sd, sd], rel=1e-6)
    assert rows["pairs"].tolist() == [3, 3] and rows["seeds"].tolist() == [8, 8]
    assert rows["standard_seeds"].isna().all()  # toy-task is not a registered task: no count
    t_seeds = [seeds_needed(lambda n, e=e: t_power(e, sd, n)) for e in power.EFFECTS]
    assert rows["t_seeds"].tolist() == t_seeds
    text = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "## Seeds from a power analysis" in text and "| analytic | 5% of ref. HV | 1 | 3 |" in text

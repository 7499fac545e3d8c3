"""The standings' robust and rank statistics, utilities and flags against hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from moabench.evaluation.aggregates import aggregate
from moabench.evaluation.flags import never_moves, still_runs, zero_seeds
from moabench.evaluation.frame import reference_of
from moabench.evaluation.metrics import cardinality, hypervolume, tchebycheff
from moabench.evaluation.pointwise import coverage, dominance, pointwise_pairs
from moabench.evaluation.rankings import all_pairs, ranking, with_utilities
from moabench.evaluation.stats import (
    DETERMINISTIC_SD,
    best_set,
    bootstrap_ranks,
    deterministic,
    equivalence_test,
    hodges_lehmann,
    holm,
    mean_ranks,
    paired_t_test,
    sign_flip_test,
    signed_rank,
    t_interval,
    task_mean_interval,
)


def test_hodges_lehmann_is_the_median_of_the_walsh_averages():
    # Walsh averages of 1, 2, 4: 1, 1.5, 2.5, 2, 3, 4 -> median (2 + 2.5) / 2
    assert hodges_lehmann([1.0, 2.0, 4.0]) == 2.25
    assert hodges_lehmann([5.0]) == 5.0
    assert math.isnan(hodges_lehmann([]))
    # one large loss barely moves it, where it drags the mean below zero
    d = [0.001 * i for i in range(1, 10)] + [-0.89]
    assert hodges_lehmann(d) > 0 > np.mean(d)


def test_sign_flip_test_counts_sign_flips_by_hand():
    # three wins: 1 of 8 flips reaches the signed-rank sum 6, 1 reaches -6: p = 2/8
    assert sign_flip_test([1.0, 2.0, 3.0]) == pytest.approx(0.25)
    assert sign_flip_test([0.0, 0.0, 0.0]) == 1.0
    assert math.isnan(sign_flip_test([1.0]))
    # nine small wins (ranks 1..9) and one loss of rank 10: W+ = 45; the subsets of 1..10 with a
    # sum >= 45 are the complements of those with a sum <= 10, 43 of them: p = 2 * 43 / 1024
    d = [0.001 * i for i in range(1, 10)] + [-0.89]
    assert sign_flip_test(d) == pytest.approx(86 / 1024)
    assert sign_flip_test(d) == pytest.approx(scipy_stats.wilcoxon(d, method="exact").pvalue)
    assert paired_t_test(d, [0.0] * 10).p_value > 0.3  # the mean-based test: its sign is wrong


def test_equivalence_test_by_hand():
    # mean 0, s = 0.1, se = 0.1 / sqrt(3); t = 0.2 / se = 3.4641 on 2 degrees of freedom:
    # P(T > t) = 1/2 - t / (2 sqrt(2 + t^2)) = 0.5 - 3.4641 / (2 sqrt(14)) = 0.037090
    assert equivalence_test([0.1, -0.1, 0.0], 0.2) == pytest.approx(0.0370901, abs=1e-6)
    assert equivalence_test([0.1, -0.1, 0.0], 0.01) > 0.4  # a narrow margin: no equivalence
    assert equivalence_test([0.003, 0.003], 0.01) == 0.0  # no spread, inside the margin
    assert equivalence_test([0.03, 0.03], 0.01) == 1.0
    assert math.isnan(equivalence_test([0.1], 0.2))


def test_deterministic_values_spread_less_than_the_stated_sd():
    assert deterministic([0.5, 0.5 + DETERMINISTIC_SD / 10, 0.5])
    assert not deterministic([0.5, 0.6, 0.5])
    assert not deterministic([0.5])  # one value says nothing about spread


def test_bootstrap_ranks_of_a_method_best_on_every_seed_and_of_twins():
    values = np.array([[3.0, 1.0, 1.0], [4.0, 2.0, 2.0], [5.0, 0.0, 0.0]])
    ranks = bootstrap_ranks(values)
    assert ranks.p_best == pytest.approx([1.0, 0.0, 0.0])
    assert list(ranks.rank_low) == [1, 2, 2] and list(ranks.rank_high) == [1, 2, 2]
    twins = bootstrap_ranks(values[:, 1:])  # equal on every seed: they share being best
    assert twins.p_best == pytest.approx([0.5, 0.5])


def test_bootstrap_ranks_spread_when_seeds_disagree():
    values = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    ranks = bootstrap_ranks(values)
    assert ranks.p_best.sum() == pytest.approx(1.0)
    assert 0.3 < ranks.p_best[0] < 0.7
    assert list(ranks.rank_low) == [1, 1] and list(ranks.rank_high) == [2, 2]


def test_best_set_by_hand():
    # d = (1, 0, 1): mean 2/3, se = 0.57735 / sqrt(3) = 1/3; t_{0.95, 2} = 2.92 -> not separated
    assert list(best_set(np.array([[1.0, 0.0], [2.0, 2.0], [3.0, 2.0]]))) == [True, True]
    # d = (1, 1, 1.1): mean 1.0333, se 0.0333: 1.0333 - 2.92 x 0.0333 > 0 -> separated
    assert list(best_set(np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 1.9]]))) == [True, False]
    # one shared seed separates nothing; no spread separates exactly
    assert list(best_set(np.array([[1.0, 0.0]]))) == [True, True]
    assert list(best_set(np.array([[1.0, 0.5], [2.0, 1.5]]))) == [True, False]


def test_cardinality_counts_points_within_its_tolerance_once():
    # (0, 1), (1e-7, 1 - 1e-7): floating-point noise of one point; (0.5, 0.5) another point
    noisy = np.array([[0.0, 1.0], [1e-7, 1 - 1e-7], [0.5, 0.5]])
    assert cardinality(noisy) == 2
    assert cardinality(noisy, tolerance=0.0) == 3
    assert cardinality(noisy, tolerance=0.6) == 1


def test_tchebycheff_by_hand():
    # w (0.25, 0.75) at f (0.4, 0.2): max(0.1, 0.15); w (1, 0) at f (0.3, 0.9): 0.3 -> mean 0.225
    points = np.array([[0.4, 0.2], [0.3, 0.9]])
    preferences = np.array([[0.25, 0.75], [1.0, 0.0]])
    assert tchebycheff(points, preferences) == pytest.approx(0.225)


@pytest.mark.parametrize("seed", range(6))
def test_sign_flip_test_equals_scipys_permutation_test(seed):
    """The numpy enumeration gives scipy.stats.permutation_test's exact p-value, ties and zeros
    included."""
    rng = np.random.default_rng(seed)
    d = np.round(rng.normal(size=3 + seed), 1)  # rounding makes ties; some zeros
    d[0] = 0.0
    reference = scipy_stats.permutation_test(
        (d,), signed_rank, permutation_type="samples", vectorized=True, n_resamples=math.inf
    ).pvalue
    assert sign_flip_test(d) == pytest.approx(min(1.0, reference))


def test_equivalence_test_equals_two_one_sided_scipy_t_tests():
    d = np.array([0.004, -0.002, 0.001, 0.003])
    above = scipy_stats.ttest_1samp(d, -0.01, alternative="greater").pvalue
    below = scipy_stats.ttest_1samp(d, 0.01, alternative="less").pvalue
    assert equivalence_test(d, 0.01) == pytest.approx(max(above, below))


def test_task_mean_weights_tasks_equally_and_mean_ranks_by_hand():
    # task 1: (1, 2, 3) mean 2; task 2: (0, 0) mean 0 -> mean of task means 1 (pooled: 1.2)
    interval = task_mean_interval([np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0])])
    assert interval.mean == 1.0 and interval.n == 2
    assert interval.low <= 1.0 <= interval.high
    # two tasks x three algorithms: ranks (1, 2, 3) and (2, 2, ...) ties share 1.5
    ranks = mean_ranks(np.array([[0.9, 0.5, 0.1], [0.7, 0.7, 0.2]]))
    assert list(ranks) == [1.25, 1.75, 3.0]


def _records(points: dict) -> pd.DataFrame:
    """Marked records of one two-objective table (ideal 0, nadir 1: normalised = raw) from
    {(algorithm, seed): [point at w = (0, 1), point at w = (1, 0)]}."""
    rows = [
        {
            "algorithm": algorithm, "seed": seed, "preference": w, "objectives": tuple(point),
            "status": "ok", "complete": True, "objective_names": ("f1", "f2"),
            "maximize": (False, False), "ideal": (0.0, 0.0), "nadir": (1.0, 1.0),
            "trajectory_objectives": (), "trajectory_steps": (),
        }  # fmt: skip
        for (algorithm, seed), front in points.items()
        for w, point in zip([(0.0, 1.0), (1.0, 0.0)], front)
    ]
    return pd.DataFrame(rows)


def test_pointwise_pairs_by_hand():
    records = _records({
        ("A", 0): [(0.2, 0.6), (0.6, 0.2)], ("A", 1): [(0.3, 0.5), (0.5, 0.3)],
        ("B", 0): [(0.4, 0.8), (0.6, 0.2)], ("B", 1): [(0.3, 0.5), (0.5, 0.4)],
    })  # fmt: skip
    pairs = pointwise_pairs(records).set_index(["a", "b"])
    ab, ba = pairs.loc[("A", "B")], pairs.loc[("B", "A")]
    # A dominates B at (w0, seed 0) and (w1, seed 1); equal at the two others
    assert (ab.a_dominates, ab.b_dominates, ab.compared) == (2, 0, 4)
    assert (ba.a_dominates, ba.b_dominates) == (0, 2)
    # every B point is weakly dominated by an A point; half of A's by B's on each seed
    assert ab.coverage == 1.0 and ba.coverage == 0.5
    # gains of A over B, per seed averaged over w: f1 (0.1, 0), f2 (0.1, 0.05)
    assert ab.gain_f1 == pytest.approx(0.05) and ab.gain_f2 == pytest.approx(0.075)
    assert ab.gain_f1_low == pytest.approx(t_interval([0.1, 0.0]).low)
    assert ba.gain_f2 == pytest.approx(-0.075)


def test_coverage_and_dominance_by_hand():
    a, b = np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.5, 0.5], [1.0, 0.0]])
    assert coverage(a, b) == 0.5 and coverage(b, a) == 0.5
    assert list(dominance(np.array([[0.1, 0.1], [0.2, 0.2]]), np.array([[0.2, 0.1]] * 2))) == [
        True, False,
    ]  # fmt: skip


def test_ranking_orders_by_mean_with_its_uncertainty_and_best_set():
    fronts = pd.DataFrame({
        "seed": [0, 1, 2] * 2, "algorithm": ["A"] * 3 + ["B"] * 3, "complete": True,
        "hypervolume": [3.0, 4.0, 5.0, 1.0, 2.0, 0.0],
    })  # fmt: skip
    result = ranking(fronts, "hypervolume")
    assert result.order == ["A", "B"] and result.estimate["A"].mean == 4.0
    assert result.p_best == {"A": 1.0, "B": 0.0} and result.rank_interval["B"] == (2, 2)
    # d = A - B = (2, 2, 5): mean 3, se 1, 3 - t_{0.95, 2} = 3 - 2.92 > 0: B is separated
    assert result.best == {"A"} and not result.deterministic
    utilities = with_utilities(pd.DataFrame({"inner_product": [0.25], "tchebycheff": [0.4]}))
    assert utilities.weighted_sum_utility[0] == 0.75 and utilities.tchebycheff_utility[0] == 0.6


def test_all_pairs_are_antisymmetric_and_holm_adjusted_over_the_table():
    fronts = pd.DataFrame({
        "seed": list(range(6)) * 3, "algorithm": ["A"] * 6 + ["B"] * 6 + ["C"] * 6,
        "complete": True,
        "hypervolume": [5, 6, 7, 8, 9, 9.5] + [4, 5.5, 6, 7, 8.2, 9] + [1, 7, 2, 8, 3, 9],
    })  # fmt: skip
    pairs = all_pairs(fronts, "hypervolume", margin=0.1).set_index(["a", "b"])
    ab, ba = pairs.loc[("A", "B")], pairs.loc[("B", "A")]
    assert ab.difference == -ba.difference and ab.hodges_lehmann == -ba.hodges_lehmann
    assert ab.p_sign_flip == ba.p_sign_flip == pytest.approx(2 / 64)  # six wins of six
    raw = [pairs.loc[p].p_sign_flip for p in [("A", "B"), ("A", "C"), ("B", "C")]]
    assert pairs.loc[("A", "C")].p_sign_flip_holm == pytest.approx(holm(raw)[1])


def test_flags_by_hand():
    assert never_moves(((1.0, 2.0), (1.0, 2.0)), (1.0, 2.0))
    assert not never_moves(((1.0, 2.0), (1.0, 2.5)), (1.0, 2.5))
    assert not never_moves(((1.0, 2.0),), (1.0, 2.0))  # a steered model: one checkpoint
    assert not never_moves((), (1.0, 2.0))
    records = _records({("A", 0): [(0.2, 0.6), (0.6, 0.2)], ("B", 0): [(0.3, 0.3), (0.3, 0.3)]})
    records["trajectory_objectives"] = [
        ((0.9, 0.9), (0.2, 0.6)), ((0.9, 0.9), (0.6, 0.2)),
        ((0.3, 0.3), (0.3, 0.3)), ((0.3, 0.3), (0.3, 0.3)),
    ]  # fmt: skip
    assert still_runs(records) == {"B": (2, 2)}
    fronts = pd.DataFrame({
        "seed": [0, 0, 6, 6], "algorithm": ["A", "B"] * 2, "complete": True,
        "hypervolume": [0.5, 0.0, 0.0, 0.0],
    })  # fmt: skip
    assert zero_seeds(fronts) == [6]


def test_the_winner_depends_on_the_estimator_and_the_aggregate_says_so():
    # task means: X (1, 1, 0.1) -> 0.7, Y (0.9, 0.9, 0.9) -> 0.9, Z (0.8, 0.8, 0.0);
    # ranks: X 1, 1, 2 -> 1.33; Y 2, 2, 1 -> 1.67; Z 3: Y wins by IQM and mean, X by mean rank
    scores = {"X": [1.0, 1.0, 0.1], "Y": [0.9, 0.9, 0.9], "Z": [0.8, 0.8, 0.0]}
    fronts = pd.DataFrame([
        {"table": f"t{t}", "algorithm": name, "seed": 0, "complete": True, "score": value}
        for name, values in scores.items() for t, value in enumerate(values)
    ])  # fmt: skip
    result = aggregate("analytic", ["t0", "t1", "t2"], fronts)
    assert result.mean_rank == pytest.approx({"X": 4 / 3, "Y": 5 / 3, "Z": 3.0})
    assert result.task_mean["X"].mean == pytest.approx(0.7)
    assert result.winners == {"IQM": "Y", "mean of task means": "Y", "mean rank": "X"}
    assert "depends on the estimator" in result.winner_text()


def test_an_analytic_table_takes_its_reference_hv_from_the_closed_form():
    table = pd.DataFrame([{
        "task": "dtlz2", "task_params": "{}", "objective_names": ("f1", "f2", "f3"),
        "maximize": (False,) * 3, "ideal": (0.0,) * 3, "nadir": (1.0,) * 3,
        "complete": True, "status": "ok", "objectives": (1.0, 0.0, 0.0),
    }])  # fmt: skip
    exact = reference_of(table)
    assert exact.kind == "exact" and exact.hypervolume == pytest.approx(1.331 - math.pi / 6)
    assert exact.hypervolume > hypervolume(exact.points)  # the 325-point sample falls short
    # a caller's own reference front: its points' HV, no closed form
    own = reference_of(table, lambda task, params: np.array([[1.0, 0.0, 0.0]]))
    assert own.closed_form is None and own.hypervolume == pytest.approx(hypervolume(own.points))

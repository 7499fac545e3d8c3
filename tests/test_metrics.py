"""Metrics against hand-computed values (ALGORITHMS.md) and the sign convention of ObjectiveSpace."""

import numpy as np
import pytest

from moabench.core.task import ObjectiveSpace
from moabench.evaluation.metrics import (
    cardinality,
    expected_utility,
    front_metrics,
    gd,
    hypervolume,
    igd,
    igd_plus,
    inner_product,
    nondominated,
    rank_correlation,
    spacing,
    sparsity,
)

F = np.array([[0.2, 0.8], [0.5, 0.5], [0.8, 0.2], [0.9, 0.9]])
PF = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])


def test_hypervolume_of_maximised_points_by_negation():
    raw = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])  # maximised, reference point (0, 0)
    # area of the staircase under (1,3), (2,2), (3,1) above (0,0): 1*3 + 1*2 + 1*1 = 6
    assert hypervolume(-raw, reference=0.0) == pytest.approx(6.0)
    assert hypervolume(raw, reference=0.0) == 0.0  # unnegated, nothing dominates the reference


def test_points_beyond_the_reference_point_contribute_nothing():
    inside = np.array([[0.5, 0.5]])
    beyond = np.array([[1.2, 0.1], [2.0, 2.0], [0.1, 1.1]])  # the last one lies on the boundary
    assert hypervolume(inside) == pytest.approx(0.6**2)  # reference HV_REFERENCE = 1.1
    assert hypervolume(np.vstack([inside, beyond])) == pytest.approx(0.6**2)
    assert hypervolume(beyond) == 0.0
    assert hypervolume(np.empty((0, 2))) == 0.0


def test_hypervolume_of_maximised_points_through_the_objective_space():
    raw = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])  # maximised, reference point (0, 0)
    space = ObjectiveSpace(
        names=("a", "b"), maximize=(True, True), ideal=(0.0, 0.0), nadir=(-1.0, -1.0)
    )
    normalised = space.normalize(raw)
    assert normalised.tolist() == (-raw).tolist()
    assert hypervolume(normalised, reference=0.0) == pytest.approx(6.0)


def test_hand_computed_indicators():
    assert igd(F, PF) == pytest.approx(0.1886, abs=1e-4)
    assert igd_plus(F, PF) == pytest.approx(0.1333, abs=1e-4)
    assert gd(F, PF) == pytest.approx(0.2828, abs=1e-4)
    assert hypervolume(F, reference=1.0) == pytest.approx(0.37)


def test_nondominated_drops_dominated_points_and_duplicates():
    assert nondominated(np.vstack([F, F[:1]])).tolist() == F[:3].tolist()


def test_cardinality_by_hand():
    # F: three non-dominated points and (0.9, 0.9), dominated by (0.5, 0.5); a repeat counts once
    assert cardinality(np.vstack([F, F[:1]])) == 3
    # an algorithm that ignores the preference: one point, where sparsity and spacing read 0
    one_point = np.tile([[0.4, 0.4]], (11, 1))
    assert cardinality(one_point) == 1
    assert sparsity(one_point) == spacing(one_point) == 0.0
    assert cardinality(np.empty((0, 2))) == 0


def test_sparsity_by_hand():
    # gaps 0.5, 0.5 in each objective: (0.25 + 0.25) * 2 / (3 - 1) = 0.5; the dominated point is ignored
    assert sparsity(np.vstack([PF, [[2.0, 2.0]]])) == pytest.approx(0.5)
    assert sparsity(PF[:1]) == 0.0


def test_sparsity_of_an_uneven_three_objective_front():
    points = np.array([[0.0, 0.0, 1.0], [0.2, 0.3, 0.5], [1.0, 0.5, 0.0]])
    # sorted gaps: f1 0.2, 0.8; f2 0.3, 0.2; f3 0.5, 0.5
    expected = (0.04 + 0.64 + 0.09 + 0.04 + 0.25 + 0.25) / 2
    assert sparsity(points) == pytest.approx(expected)
    assert sparsity(points[::-1]) == pytest.approx(expected)  # order of the grid does not matter


def test_spacing_by_hand():
    points = np.array([[0.0, 1.0], [0.25, 0.75], [1.0, 0.0]])
    # nearest L1 distances 0.5, 0.5, 1.5: sample std = sqrt(((1/3)^2 * 2 + (2/3)^2) / 2)
    assert spacing(points) == pytest.approx(np.sqrt(1 / 3))
    assert spacing(PF) == pytest.approx(0.0)


def test_preference_metrics_by_hand():
    preferences = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    following = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])  # weight on f_j -> small f_j
    assert rank_correlation(following, preferences) == pytest.approx(1.0)
    assert rank_correlation(following[::-1], preferences) == pytest.approx(-1.0)
    assert rank_correlation(np.ones((3, 2)), preferences) == 0.0
    # f1 follows its weight (rho(w1, -f1) = 1), f2 is constant (counts 0): mean 0.5
    half = np.array([[0.9, 0.3], [0.5, 0.3], [0.1, 0.3]])
    assert rank_correlation(half, preferences) == pytest.approx(0.5)
    # four grid points, one swap in f1's ranks: rho = 1 - 6 * (1 + 1) / (4 * 15) = 0.8; f2 exact
    grid = np.array([[0.0, 1.0], [0.25, 0.75], [0.75, 0.25], [1.0, 0.0]])
    swapped = np.array([[0.9, 0.1], [0.95, 0.3], [0.2, 0.7], [0.1, 0.9]])
    assert rank_correlation(swapped, grid) == pytest.approx((0.8 + 1.0) / 2)
    assert inner_product(following, preferences) == pytest.approx((0 + 0.5 + 0) / 3)
    # utilities -w^T f: w=(0,1) -> max(0, -1) = 0; w=(.5,.5) -> -0.5; w=(1,0) -> 0
    assert expected_utility(following, preferences) == pytest.approx(-0.5 / 3)


def test_front_metrics_without_a_reference_front_leaves_distances_nan():
    metrics = front_metrics(F, np.full((4, 2), 0.5))
    assert np.isnan(metrics["igd"]) and np.isnan(metrics["gd"])
    assert metrics["hypervolume"] == pytest.approx(hypervolume(F))
    assert metrics["cardinality"] == 3
    with_front = front_metrics(F, np.full((4, 2), 0.5), PF)
    assert with_front["igd_plus"] == pytest.approx(0.1333, abs=1e-4)


def test_an_objective_space_with_inverted_ideal_and_nadir_is_rejected():
    with pytest.raises(ValueError, match="ideal 1.0 must lie below its nadir 0.0"):
        ObjectiveSpace(names=("a",), maximize=(False,), ideal=(1.0,), nadir=(0.0,))


def test_front_metrics_of_an_empty_front():
    metrics = front_metrics(np.empty((0, 2)), np.empty((0, 2)), PF)
    assert metrics["hypervolume"] == 0.0 and metrics["cardinality"] == 0
    assert np.isnan(metrics["igd"]) and np.isnan(metrics["expected_utility"])


def test_checkpoint_front_by_hand():
    """Points in the normalised space (reference 1.1): step 0 at (1, 1) adds 0.01; step 10 at
    (0.1, 1) adds 1.0 x 0.1; step 20 at (0.1, 0.1) dominates everything: 1.0 x 1.0 = 1."""
    from moabench.evaluation.metrics import checkpoint_front

    steps = np.array([0, 10, 20])
    points = np.array([[1.0, 1.0], [0.1, 1.0], [0.1, 0.1]])
    total, reached = checkpoint_front(steps, points)
    assert total == pytest.approx(1.0)
    assert reached == 20  # 0.1 at step 10 is below 95% of 1.0
    total, reached = checkpoint_front(steps, points, fraction=0.1)
    assert reached == 10
    assert checkpoint_front(np.array([0]), np.array([[2.0, 2.0]]))[1] != 0  # nothing inside: nan

"""Property tests of the combination rules, from their papers (see ALGORITHMS.md)."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch
from torchjd.aggregation import CAGradWeighting, MGDAWeighting

from moabench import make_algorithm
from moabench.algorithms.cagrad import conflict_averse_coefficients
from moabench.algorithms.dynamic_weighting import mirror_descent_step
from moabench.core.simplex import conflict_averse_dual, min_norm_point, min_norm_weights

RNG = np.random.default_rng(20260522)


def random_gradients(m: int, d: int = 20, rng=RNG) -> np.ndarray:
    return rng.normal(size=(m, d))


def gram(gradients: np.ndarray) -> np.ndarray:
    return gradients @ gradients.T


def coefficients(name: str, gradients: np.ndarray, preference=None, **params) -> np.ndarray:
    m = len(gradients)
    w = np.full(m, 1.0 / m) if preference is None else preference
    return make_algorithm(name, w, **params).coefficients(gram(gradients))


# --- MGDA -----------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [2, 3, 5, 8])
def test_mgda_is_a_common_descent_direction_away_from_stationarity(m):
    for _ in range(20):
        gradients = random_gradients(m, d=m + 10)
        direction = coefficients("mgda", gradients) @ gradients
        # Sener & Koltun: <g_i, d> >= ||d||^2 > 0 for every objective.
        assert np.linalg.norm(direction) > 1e-6
        assert np.all(gradients @ direction >= direction @ direction - 1e-8)


@pytest.mark.parametrize(
    "gradients",
    [
        np.array([[1.0, 2.0], [-1.0, -2.0]]),  # opposite gradients
        np.array([[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]]),  # origin inside the triangle
    ],
)
def test_mgda_direction_vanishes_at_a_pareto_stationary_point(gradients):
    direction = coefficients("mgda", gradients) @ gradients
    assert np.linalg.norm(direction) < 1e-6


@pytest.mark.parametrize("m", [2, 4, 8])
def test_min_norm_point_matches_an_independent_qp(m):
    for _ in range(10):
        h = gram(random_gradients(m, d=3))  # rank-deficient for m > 3
        ours = min_norm_point(h)
        x = cp.Variable(m)
        problem = cp.Problem(
            cp.Minimize(cp.sum_squares(random_sqrt(h) @ x)), [x >= 0, cp.sum(x) == 1]
        )
        problem.solve(cp.CLARABEL)
        assert ours @ h @ ours <= problem.value + 1e-7
        assert np.all(ours >= 0) and ours.sum() == pytest.approx(1.0)


def random_sqrt(h: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(h)
    return (vectors * np.sqrt(np.clip(values, 0, None))).T


@pytest.mark.parametrize("m", [2, 3, 6])
def test_mgda_agrees_with_torchjd(m):
    weighting = MGDAWeighting(epsilon=1e-9, max_iters=10_000)
    for _ in range(10):
        h = gram(random_gradients(m))
        ours = min_norm_point(h)
        theirs = weighting(torch.as_tensor(h)).numpy()
        # torchjd's Frank-Wolfe stops near the optimum: compare the norms of the directions.
        assert ours @ h @ ours <= theirs @ h @ theirs + 1e-9
        assert np.sqrt(ours @ h @ ours) == pytest.approx(np.sqrt(theirs @ h @ theirs), rel=1e-3)


# --- GAPO / P-GAPO ----------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2])
def test_gapo_progress_ratio_follows_gradient_norm_power(p):
    """Theorem 3.3: when every alpha_i > 0, <g_i, d> / ||g_i||^p is the same for every i."""
    checked = 0
    for _ in range(200):
        gradients = random_gradients(3, d=6) * RNG.uniform(0.1, 10, size=(3, 1))
        h = gram(gradients)
        a = coefficients("gapo", gradients, p=p)
        norms = np.linalg.norm(gradients, axis=1)
        alpha = a * norms**p
        if alpha.min() < 1e-6:
            continue
        progress = gradients @ (a @ gradients)
        ratio = progress / norms**p
        assert ratio == pytest.approx(np.full(3, ratio.mean()), rel=1e-6)
        assert np.all(progress > 0)
        checked += 1
        assert h.shape == (3, 3)
    assert checked >= 10


def test_gapo_with_p0_is_mgda_and_appendix_variant_returns_alpha():
    gradients = random_gradients(4)
    assert coefficients("gapo", gradients, p=0) == pytest.approx(coefficients("mgda", gradients))
    norms = np.linalg.norm(gradients, axis=1)
    main = coefficients("gapo", gradients, p=2)
    appendix = coefficients("gapo", gradients, p=2, variant="appendix")
    assert appendix == pytest.approx(main * norms**2)
    assert appendix.sum() == pytest.approx(1.0)


def test_gapo_with_two_objectives_and_p1_has_equal_alphas():
    for _ in range(10):
        gradients = random_gradients(2)
        alpha = coefficients("gapo", gradients, p=1, variant="appendix")
        assert alpha == pytest.approx([0.5, 0.5])


def test_p_gapo_weights_preferences_by_inverse_norms():
    gradients = random_gradients(3) * np.array([[1.0], [4.0], [0.5]])
    w = np.array([0.2, 0.3, 0.5])
    a = coefficients("p-gapo", gradients, preference=w)
    assert a == pytest.approx(w / np.linalg.norm(gradients, axis=1))


def test_gapo_zero_gradient_gets_zero_coefficient():
    gradients = np.array([[0.0, 0.0], [1.0, 2.0]])
    assert np.all(np.isfinite(coefficients("gapo", gradients)))
    assert coefficients("p-gapo", gradients, preference=np.array([0.5, 0.5]))[0] == 0.0


# --- CAGrad / RACO ----------------------------------------------------------------------------


def primal_conflict_averse_direction(gradients, anchor, c):
    """max_d min_i <g_i, d> s.t. ||d - g0|| <= c ||g0||, solved on the gradients themselves."""
    g0 = anchor @ gradients
    d = cp.Variable(gradients.shape[1])
    problem = cp.Problem(
        cp.Maximize(cp.min(gradients @ d)), [cp.norm(d - g0) <= c * np.linalg.norm(g0)]
    )
    problem.solve(cp.CLARABEL)
    return d.value


@pytest.mark.parametrize("m", [2, 3, 5])
@pytest.mark.parametrize("c", [0.2, 0.4, 0.9])
def test_conflict_averse_direction_solves_the_primal(m, c):
    for _ in range(5):
        gradients = random_gradients(m, d=8)
        anchor = RNG.dirichlet(np.ones(m))
        ours = conflict_averse_coefficients(gram(gradients), anchor, c) @ gradients
        primal = primal_conflict_averse_direction(gradients, anchor, c)
        assert ours == pytest.approx(primal, abs=1e-4 * np.linalg.norm(primal))


def test_conflict_averse_dual_two_objective_closed_form_matches_general_solver():
    for _ in range(50):
        h = gram(random_gradients(2, d=5))
        anchor = RNG.dirichlet(np.ones(2))
        c = RNG.uniform(0.05, 2.0)
        closed = conflict_averse_dual(h, anchor, c)
        k = c * np.sqrt(anchor @ h @ anchor)
        x = cp.Variable(2)
        problem = cp.Problem(
            cp.Minimize((h @ anchor) @ x + k * cp.norm(random_sqrt(h) @ x)),
            [x >= 0, cp.sum(x) == 1],
        )
        problem.solve(cp.CLARABEL)
        value = (h @ anchor) @ closed + k * np.sqrt(closed @ h @ closed)
        assert value <= problem.value + 1e-7 * max(1.0, abs(problem.value))


@pytest.mark.parametrize("m", [2, 3, 6])
def test_cagrad_agrees_with_torchjd(m):
    weighting = CAGradWeighting(c=0.4, norm_eps=0.0)
    for _ in range(5):
        h = gram(random_gradients(m))
        ours = coefficients("cagrad", random_sqrt(h).T, rescale=False)
        theirs = weighting(torch.as_tensor(h)).numpy()
        assert ours == pytest.approx(theirs, rel=1e-4, abs=1e-6)


def test_cagrad_with_c0_is_the_mean():
    gradients = random_gradients(4)
    for rescale in (True, False):
        assert coefficients("cagrad", gradients, c=0.0, rescale=rescale) == pytest.approx(
            np.full(4, 0.25)
        )


def test_cagrad_rescale_divides_by_one_plus_c_squared():
    gradients = random_gradients(3)
    plain = coefficients("cagrad", gradients, c=0.5, rescale=False)
    assert coefficients("cagrad", gradients, c=0.5) == pytest.approx(plain / 1.25)


def test_raco_with_c0_is_linear_scalarization():
    gradients = random_gradients(3)
    w = np.array([0.1, 0.6, 0.3])
    assert coefficients("raco", gradients, w, c=0.0) == pytest.approx(
        coefficients("ls", gradients, w)
    )


def test_raco_without_clip_is_weighted_anchor_cagrad():
    gradients = random_gradients(3)
    w = np.array([0.1, 0.6, 0.3])
    expected = conflict_averse_coefficients(gram(gradients), w, 0.4)
    assert coefficients("raco", gradients, w, clip=False) == pytest.approx(expected)
    primal = primal_conflict_averse_direction(gradients, w, 0.4)
    assert expected @ gradients == pytest.approx(primal, abs=1e-4 * np.linalg.norm(primal))


def test_raco_clip_changes_the_direction_only_when_the_dual_point_is_interior():
    interior = vertex = 0
    for _ in range(200):
        gradients = random_gradients(2, d=3)
        w = RNG.dirichlet(np.ones(2))
        h = gram(gradients)
        p = conflict_averse_dual(h, w, 0.4)
        clipped = coefficients("raco", gradients, w) @ gradients
        unclipped = coefficients("raco", gradients, w, clip=False) @ gradients
        if p.min() > 1e-9 and not np.allclose(p, w):
            interior += 1
            assert not np.allclose(clipped, unclipped, atol=1e-9)
        elif p.min() <= 1e-9:
            vertex += 1
            assert clipped == pytest.approx(unclipped, abs=1e-9)
    assert interior >= 10 and vertex >= 10


def test_raco_direction_is_g0_when_the_clipped_combination_vanishes():
    gradients = np.array([[1.0, 0.0], [1.0, 0.0]])
    w = np.array([0.0, 1.0])
    a = coefficients("raco", gradients, w)
    assert np.all(np.isfinite(a))


# --- dynamic weighting -------------------------------------------------------------------------


def test_dynamic_weighting_moves_toward_the_objective_with_larger_influence():
    h = np.array([[4.0, 1.0], [1.0, 1.0]])  # influence H 1 = (5, 2): objective 0 dominates
    rule = make_algorithm("dynamic-weighting", [0.5, 0.5], mu=1.0, gradient_clip=None)
    first = rule.coefficients(h, learning_rate=0.1)
    second = rule.coefficients(h, learning_rate=0.1)
    assert first[0] > 0.5 and second[0] > first[0]
    assert first.sum() == pytest.approx(1.0)
    assert first == pytest.approx(mirror_descent_step(np.array([0.5, 0.5]), h, 0.1, 1.0))
    # softmax(log w + eta I / mu) by hand: w0 / w1 = exp(0.1 * (5 - 2))
    assert first[0] / first[1] == pytest.approx(np.exp(0.3))


def test_dynamic_weighting_default_mu_keeps_the_papers_ratio_to_the_learning_rate():
    h = np.array([[4.0, 1.0], [1.0, 1.0]])
    rule = make_algorithm("dynamic-weighting", [0.5, 0.5], gradient_clip=None)
    first = rule.coefficients(h, learning_rate=0.02)
    assert first[0] / first[1] == pytest.approx(np.exp(0.1 * (5 - 2)))  # eta / mu = 0.1


def test_dynamic_weighting_starts_uniform_or_from_the_preference():
    h = np.eye(2)
    assert make_algorithm("dynamic-weighting", [0.9, 0.1]).coefficients(h, 0.0) == pytest.approx(
        [0.5, 0.5]
    )
    from_preference = make_algorithm("dynamic-weighting", [0.9, 0.1], initial_weights="preference")
    assert from_preference.coefficients(h, 0.0) == pytest.approx([0.9, 0.1])


# --- UPGrad, LS, QP plumbing -------------------------------------------------------------------


@pytest.mark.parametrize("m", [2, 4])
def test_upgrad_never_conflicts_with_an_objective(m):
    for _ in range(10):
        gradients = random_gradients(m, d=6)
        direction = coefficients("upgrad", gradients, RNG.dirichlet(np.ones(m))) @ gradients
        assert np.all(gradients @ direction >= -1e-7)


def test_linear_scalarization_returns_the_preference_without_a_gram_matrix():
    rule = make_algorithm("ls", [0.3, 0.7])
    assert rule.needs_gram is False
    assert rule.coefficients(np.empty((0, 0))) == pytest.approx([0.3, 0.7])


def test_min_norm_weights_respects_the_weighted_simplex():
    points = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # e1, e2, -e1: 0 is in the hull
    assert min_norm_weights(points, np.ones(3)) == pytest.approx([0.5, 0.0, 0.5], abs=1e-12)
    # v0 + v1 + v2 / 2 = 1 and v0 = v2 for the zero vector: v = (2/3, 0, 2/3)
    v = min_norm_weights(points, np.array([1.0, 1.0, 0.5]))
    assert v == pytest.approx([2 / 3, 0.0, 2 / 3], abs=1e-12)

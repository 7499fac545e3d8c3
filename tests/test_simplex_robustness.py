"""The simplex solvers and the rules on badly scaled Gram matrices (issue 10, item 1).

For any positive semi-definite Gram matrix (any scale, any rank, m up to 16) every Gram rule returns
finite coefficients, and the QP-based rules are optimal for their own problem against cvxpy with
Clarabel, solved on the gradients themselves. Tolerances are relative to the scale float64 can
resolve from H: p^T H p carries rounding of about 1e-16 (sum_i p_i ||g_i||)^2.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moabench import make_algorithm
from moabench.algorithms.cagrad import conflict_averse_coefficients
from moabench.core.algorithm import GramRule, algorithms
from moabench.core.simplex import conflict_averse_dual, min_norm_point

GRAM_RULES = sorted(  # the built-in ones (conftest registers a test-only rule that returns NaN)
    name
    for name in algorithms.names()
    if issubclass(algorithms.get(name), GramRule)
    and algorithms.get(name).__module__.startswith("moabench.algorithms.")
)
#: Derandomized, and no example database in the working tree: the same examples on every run.
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Clarabel flags some hostile matrices as solved inaccurately: the optimality checks are one-sided
# (ours may be better), and the issue's examples, compared both ways, pass at 1e-6 or tighter.
pytestmark = pytest.mark.filterwarnings("ignore:Solution may be inaccurate:UserWarning")
#: Clarabel's tolerances, tightened from 1e-8 so that the reference is the more accurate side.
CLARABEL = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "tol_ktratio": 1e-10}
SHAPES = ["ill-scaled", "rank-deficient", "colinear", "anti-colinear", "near-colinear", "zero"]


@st.composite
def hostile_jacobians(
    draw, max_m: int = 16, exponents: tuple[float, float] = (-6, 6)
) -> np.ndarray:
    """m x d Jacobians whose rows have lengths from 10^exponents[0] to 10^exponents[1] (by default
    differing by up to 1e12), some of them parallel, opposite, nearly parallel, zero or too many
    for the dimension."""
    m = draw(st.integers(2, max_m))
    shape = draw(st.sampled_from(SHAPES))
    d = draw(st.integers(1, m - 1)) if shape == "rank-deficient" else draw(st.integers(m, m + 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    jacobian = rng.normal(size=(m, d))
    if shape in ("colinear", "anti-colinear", "near-colinear"):
        for _ in range(draw(st.integers(1, m - 1))):
            i, j = rng.choice(m, 2, replace=False)
            sign = -1.0 if shape == "anti-colinear" else rng.choice([-1.0, 1.0])
            jacobian[i] = sign * rng.uniform(0.1, 10) * jacobian[j]
            if shape == "near-colinear":
                noise = 10 ** rng.uniform(-12, -3) * np.linalg.norm(jacobian[i])
                jacobian[i] += noise * rng.normal(size=d)
    if shape == "zero":
        jacobian[rng.integers(m)] = 0.0
    lengths = draw(st.lists(st.floats(*exponents), min_size=m, max_size=m))
    return jacobian * 10.0 ** np.array(lengths)[:, None]


def preference_for(jacobian: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(len(jacobian) + int(np.count_nonzero(jacobian)))
    return rng.dirichlet(np.ones(len(jacobian)))


def solve(objective, m: int) -> np.ndarray:
    """cvxpy + Clarabel over the simplex; the (clipped, renormalised) weights."""
    p = cp.Variable(m)
    cp.Problem(cp.Minimize(objective(p)), [p >= 0, cp.sum(p) == 1]).solve(cp.CLARABEL, **CLARABEL)
    weights = np.clip(p.value, 0.0, None)
    return weights / weights.sum()


def reference_min_norm_point(jacobian: np.ndarray) -> np.ndarray:
    scale = np.linalg.norm(jacobian, axis=1).max()
    return solve(lambda p: cp.norm(jacobian.T @ p / scale), len(jacobian))


def dual_value(jacobian: np.ndarray, anchor: np.ndarray, c: float, p: np.ndarray) -> float:
    g0 = anchor @ jacobian
    return float((p @ jacobian) @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(p @ jacobian))


def reference_dual(jacobian: np.ndarray, anchor: np.ndarray, c: float) -> np.ndarray:
    scale = np.linalg.norm(jacobian, axis=1).max()
    g0 = anchor @ jacobian / scale
    linear = jacobian @ g0 / scale
    return solve(
        lambda p: linear @ p + c * np.linalg.norm(g0) * cp.norm(jacobian.T @ p / scale),
        len(jacobian),
    )


def primal_direction(jacobian: np.ndarray, anchor: np.ndarray, c: float) -> np.ndarray:
    """max_d min_i <g_i, d> s.t. ||d - g0|| <= c ||g0|| (cvxpy, on the gradients themselves)."""
    g0 = anchor @ jacobian
    d = cp.Variable(jacobian.shape[1])
    constraint = [cp.norm(d - g0) <= c * np.linalg.norm(g0)]
    cp.Problem(cp.Maximize(cp.min(jacobian @ d)), constraint).solve(cp.CLARABEL, **CLARABEL)
    return d.value


def resolution(jacobian: np.ndarray, *weights: np.ndarray) -> float:
    """sum_i p_i ||g_i||, the largest over the given weights: the norm of the combination
    without cancellation, the scale against which H resolves it."""
    norms = np.linalg.norm(jacobian, axis=1)
    return max(float(p @ norms) for p in weights)


# --- The issue's examples (each raised or was biased before) --------------------------------------


def test_cagrad_and_raco_on_the_issues_diagonal_example():
    jacobian = np.diag([1.0, 1e3, 1.0])  # H = diag(1, 1e6, 1): quadprog reported inconsistency
    gram = jacobian @ jacobian.T
    cagrad = make_algorithm("cagrad", [1 / 3] * 3, rescale=False).coefficients(gram)
    expected = primal_direction(jacobian, np.full(3, 1 / 3), 0.4)
    assert cagrad @ jacobian == pytest.approx(expected, abs=1e-7 * np.linalg.norm(expected))
    w = np.array([0.6, 0.2, 0.2])
    unclipped = make_algorithm("raco", w, clip=False).coefficients(gram)
    expected = primal_direction(jacobian, w, 0.4)
    assert unclipped @ jacobian == pytest.approx(expected, abs=1e-7 * np.linalg.norm(expected))
    assert np.all(np.isfinite(make_algorithm("raco", w).coefficients(gram)))


def test_cagrad_and_raco_on_random_jacobians_with_one_row_500_times_longer():
    """The issue's experiment: 3 x 50 Jacobians; 20 calls in 50 raised before."""
    rng = np.random.default_rng(10)
    for _ in range(50):
        jacobian = rng.normal(size=(3, 50))
        jacobian[rng.integers(3)] *= 500
        w = rng.dirichlet(np.ones(3))
        gram = jacobian @ jacobian.T
        cagrad = make_algorithm("cagrad", w, rescale=False).coefficients(gram)
        raco = make_algorithm("raco", w, clip=False).coefficients(gram)
        for a, anchor in ((cagrad, np.full(3, 1 / 3)), (raco, w)):
            expected = primal_direction(jacobian, anchor, 0.4)
            assert a @ jacobian == pytest.approx(expected, abs=1e-6 * np.linalg.norm(expected))


def test_mgda_is_not_biased_by_a_long_gradient():
    """Two short conflicting gradients and a long one: the ridge, 1e-10 x trace / m, was 30 times
    the short gradients' Gram entries and gave (0.501, 0.499, 0) instead of (0.545, 0.455, 0)."""
    short = 1e-3 * np.array([[1.0, 0.0, 0.0], [-0.9, 0.75, 0.0]])
    expected = min_norm_point(short @ short.T)  # m = 2: closed form
    towards = expected @ short / np.linalg.norm(expected @ short)
    jacobian = np.vstack([short, 1e3 * (towards + np.array([0.0, 0.0, 1.0]))])
    assert expected == pytest.approx([0.5446375, 0.4553625], abs=1e-7)
    assert min_norm_point(jacobian @ jacobian.T) == pytest.approx([*expected, 0.0], abs=1e-12)


# --- Every rule, any positive semi-definite Gram matrix ------------------------------------------


def test_the_registry_lists_the_gram_rules_checked_here():
    expected = {"cagrad", "dynamic-weighting", "gapo", "ls", "mgda", "p-gapo", "raco", "upgrad"}
    assert expected <= set(GRAM_RULES)


@PROPERTY
@given(hostile_jacobians(exponents=(-160, 150)))
def test_every_gram_rule_returns_finite_coefficients(jacobian):
    """Gradient norms from 1e-160 to 1e150 (about the range of a finite float64 H), in any mix."""
    gram = jacobian @ jacobian.T
    for name in GRAM_RULES:
        coefficients = make_algorithm(name, preference_for(jacobian)).coefficients(gram, 0.01)
        assert coefficients.shape == (len(jacobian),), name
        assert np.all(np.isfinite(coefficients)), name


@PROPERTY
@given(hostile_jacobians())
def test_min_norm_point_is_optimal(jacobian):
    ours = min_norm_point(jacobian @ jacobian.T)
    assert np.all(ours >= 0) and ours.sum() == pytest.approx(1.0, abs=1e-12)
    reference = reference_min_norm_point(jacobian)
    excess = np.linalg.norm(ours @ jacobian) ** 2 - np.linalg.norm(reference @ jacobian) ** 2
    assert excess <= 1e-13 * resolution(jacobian, ours, reference) ** 2


@PROPERTY
@given(hostile_jacobians(), st.floats(0.05, 2.0))
def test_conflict_averse_dual_is_optimal(jacobian, c):
    anchor = preference_for(jacobian)
    ours = conflict_averse_dual(jacobian @ jacobian.T, anchor, c)
    assert np.all(ours >= 0) and ours.sum() == pytest.approx(1.0, abs=1e-12)
    reference = reference_dual(jacobian, anchor, c)
    excess = dual_value(jacobian, anchor, c, ours) - dual_value(jacobian, anchor, c, reference)
    g0_norm = np.linalg.norm(anchor @ jacobian)
    assert excess <= 1e-11 * g0_norm * resolution(jacobian, ours, reference)


@PROPERTY
@given(hostile_jacobians(max_m=8), st.floats(0.05, 2.0))
def test_conflict_averse_direction_solves_the_primal(jacobian, c):
    """d = sum_i a_i g_i is in the ball and attains the dual value: zero duality gap."""
    anchor = preference_for(jacobian)
    gram = jacobian @ jacobian.T
    p = conflict_averse_dual(gram, anchor, c)
    a = conflict_averse_coefficients(gram, anchor, c)
    if np.array_equal(a, anchor):  # G_p = 0 to rounding: g0, as in the official code
        return
    d, g0 = a @ jacobian, anchor @ jacobian
    radius = c * np.linalg.norm(g0)
    assert np.linalg.norm(d - g0) <= radius * (1 + 1e-9)
    # The gap is first order in p, whose rounding weighs <g_i, d> ~ ||g_i|| ||d|| for every i,
    # and H fixes the direction of G_p only to 1e-16 / delta^2, delta = ||G_p|| / sum p_i ||g_i||.
    norms = np.linalg.norm(jacobian, axis=1)
    delta = np.linalg.norm(p @ jacobian) / (p @ norms)
    rounding = 1e-13 * (np.linalg.norm(g0) * norms.sum() + radius * norms.max() / delta**2)
    assert np.min(jacobian @ d) >= dual_value(jacobian, anchor, c, p) - rounding


# --- Invariance to the scale of H ---------------------------------------------------------------


@st.composite
def ill_scaled_full_rank(draw) -> np.ndarray:
    m = draw(st.integers(3, 10))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    exponents = draw(st.lists(st.floats(-4, 4), min_size=m, max_size=m))
    return rng.normal(size=(m, m + 10)) * 10.0 ** np.array(exponents)[:, None]


SCALES = [1e-6, 1e-3, 1e3, 1e6]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


@settings(PROPERTY, max_examples=50)
@given(ill_scaled_full_rank())
def test_rules_are_invariant_to_the_scale_of_the_gradients(jacobian):
    """Gradients scaled by s (H by s^2), s from 1e-6 to 1e6: MGDA's weights and the CAGrad and
    RACO coefficients do not change, GAPO's direction changes by a positive factor only."""
    gram = jacobian @ jacobian.T
    w = preference_for(jacobian)
    rules = {name: make_algorithm(name, w) for name in ("mgda", "cagrad", "raco")}
    gapo = {p: make_algorithm("gapo", w, p=p) for p in (1, 2)}
    for s in SCALES:
        for name, rule in rules.items():
            assert rule.coefficients(s**2 * gram) == pytest.approx(
                rule.coefficients(gram), rel=1e-8, abs=1e-10
            ), name
        for p, rule in gapo.items():
            scaled = unit(rule.coefficients(s**2 * gram) @ jacobian)
            assert scaled == pytest.approx(unit(rule.coefficients(gram) @ jacobian), abs=1e-8), p


@settings(PROPERTY, max_examples=50)
@given(ill_scaled_full_rank(), st.lists(st.floats(-6, 6), min_size=10, max_size=10))
def test_gapo_p1_weights_do_not_depend_on_each_gradients_length(jacobian, exponents):
    """g_i / ||g_i|| is the same for every positive rescaling of each g_i: so is alpha."""
    m = len(jacobian)
    stretched = jacobian * 10.0 ** np.array(exponents[:m])[:, None]
    rule = make_algorithm("gapo", np.full(m, 1 / m), p=1, variant="appendix")
    alpha = rule.coefficients(stretched @ stretched.T)
    assert alpha == pytest.approx(rule.coefficients(jacobian @ jacobian.T), rel=1e-8, abs=1e-10)


# --- Zero gradients and RACO's clip ---------------------------------------------------------------


def test_a_zero_gradient_is_the_min_norm_point_and_a_dual_vertex_of_value_zero():
    jacobian = np.array([[1.0, 0.0], [0.0, 0.0], [0.5, 1e4]])
    gram = jacobian @ jacobian.T
    assert min_norm_point(gram) == pytest.approx([0.0, 1.0, 0.0])
    for variant in ("main", "appendix"):  # Pareto-stationary: GAPO takes no step either
        a = make_algorithm("gapo", np.full(3, 1 / 3), variant=variant).coefficients(gram)
        assert a @ jacobian == pytest.approx([0.0, 0.0])
    # the other gradients agree, so every combination of them has a positive dual value
    assert conflict_averse_dual(gram, np.full(3, 1 / 3), 0.4) == pytest.approx([0.0, 1.0, 0.0])
    conflicting = np.array([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.1]])
    p = conflict_averse_dual(conflicting @ conflicting.T, np.array([0.6, 0.0, 0.4]), 0.4)
    assert p[1] == 0.0


def test_a_negligible_gradient_counts_as_zero_in_the_coefficients_too():
    """A gradient 1e-310 times as long as another counts as zero: the dual puts its weight there,
    and the CAGrad / RACO coefficients must not divide by its length (they overflowed)."""
    jacobian = np.array([[1e150, 0.0], [1e-160, 0.0], [1e140, 1e140]])
    gram = jacobian @ jacobian.T
    assert conflict_averse_dual(gram, np.full(3, 1 / 3), 0.4) == pytest.approx([0.0, 1.0, 0.0])
    for name in ("cagrad", "raco"):
        assert np.all(np.isfinite(make_algorithm(name, [0.4, 0.2, 0.4]).coefficients(gram)))


def test_raco_clip_changes_the_direction_on_an_edge_for_three_objectives():
    """m >= 3: the clip min(p, w) keeps the direction at a vertex, but on an edge of the simplex it
    changes it (unless w happens to be proportional to p on the edge), as inside."""
    rng = np.random.default_rng(3)
    edges = vertices = 0
    for _ in range(300):
        jacobian = rng.normal(size=(3, 3))
        w = rng.dirichlet(np.ones(3))
        gram = jacobian @ jacobian.T
        support = np.count_nonzero(conflict_averse_dual(gram, w, 0.4) > 1e-9)
        clipped = make_algorithm("raco", w).coefficients(gram) @ jacobian
        unclipped = make_algorithm("raco", w, clip=False).coefficients(gram) @ jacobian
        if support == 2:
            edges += 1
            assert not np.allclose(clipped, unclipped, atol=1e-9)
        elif support == 1:
            vertices += 1
            assert clipped == pytest.approx(unclipped, abs=1e-9)
    assert edges >= 10 and vertices >= 10

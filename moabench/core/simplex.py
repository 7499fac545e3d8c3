"""Exact solvers for the small problems over the probability simplex that the rules need.

- `min_norm_point(H)`: argmin_{p in simplex} p^T H p (MGDA, GAPO).
- `conflict_averse_dual(H, anchor, c)`: argmin_{p in simplex} p^T H anchor + c ||g0|| sqrt(p^T H p),
  g0 = sum_i anchor_i g_i (the dual of CAGrad and RACO).

Both take the m x m Gram matrix H_ij = <g_i, g_j> (float64), never the gradients, and accept any
positive semi-definite H: any scale, any rank, opposite or zero gradients. Both are exact, with no
ridge: closed forms for m = 2; for m >= 3, Lawson & Hanson's NNLS for min-norm points
(`min_norm_weights`) and, for the dual, a sequence of them with a closed form on each face
(`_dual_by_active_set`).

Scale. Gradient norms n_i = ||g_i|| differ by orders of magnitude between objectives, so for
m >= 3 the solvers work in a scale-free form (`ScaledProblem`): unit vectors u_i with the cosines
of H as inner products, and weights v with p_i = (n_min / n_i) v_i, so that every number is of
order one relative to the shortest gradient. A gradient shorter than 1e-150 of the longest counts
as zero (`negligible`): a zero gradient is the min-norm point, and a dual vertex of value 0.

Precision. H carries rounding of about 1e-16 (sum_i p_i n_i)^2 in p^T H p, so it fixes the
combination sum_i p_i g_i only to about 1e-8 of sum_i p_i n_i; cosines within rounding of +-1 are
taken as exactly +-1 (so that opposite gradients cancel exactly). The solutions match an
independent conic solver (cvxpy + Clarabel, on the gradients themselves) or beat it, on matrices
with norms from 1e-6 to 1e6 and rank-deficient, colinear and opposite gradients
(`tests/test_simplex_robustness.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = float(np.finfo(np.float64).eps)
#: Most NNLS solves in one conflict-averse dual (the iteration usually stops after two to four).
MAX_STEPS = 40
#: A gradient shorter than this fraction of the longest counts as zero.
NEGLIGIBLE = 1e-150
#: ||x||^2, x = sum_i v_i u_i, is known to about this times (sum_i v_i)^2, its value without
#: cancellation.
ROUNDING = 1e-14


@dataclass(frozen=True)
class ScaledProblem:
    """g_i = n_i u_i with unit vectors u_i, the columns of `units` (units^T units = K, the cosine
    matrix), and the change of variables p_i = weights_i v_i, weights_i = n_min / n_i in (0, 1]:
    sum_i p_i g_i = n_min sum_i v_i u_i, and the simplex is {v >= 0, weights^T v = 1}."""

    units: np.ndarray
    weights: np.ndarray

    @classmethod
    def of(cls, gram: np.ndarray, norms: np.ndarray) -> ScaledProblem:
        """The scaled form of H, given the gradient norms (all non-zero)."""
        values, vectors = np.linalg.eigh(gram / norms[:, None] / norms[None, :])  # K
        # Eigenvalues at rounding level are zeros that rounding moved: keeping them would put
        # sqrt(rounding) into the unit vectors, so that opposite gradients could not cancel.
        values[values <= len(values) * EPS * values.max()] = 0.0
        units = np.sqrt(values)[:, None] * vectors.T
        return cls(units, norms.min() / norms)

    def simplex_weights(self, v: np.ndarray) -> np.ndarray:
        """p = weights * v, renormalised onto the simplex (removes rounding)."""
        p = self.weights * np.clip(v, 0.0, None)
        return p / p.sum()


def gradient_norms(gram: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(np.diag(gram), 0.0, None))


def negligible(norms: np.ndarray) -> np.ndarray:
    """The gradients that count as zero: zero, or shorter than `NEGLIGIBLE` times the longest (their
    squares would share no digits with its square, and the scaled form would overflow)."""
    return norms <= NEGLIGIBLE * norms.max()


def min_norm_weights(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """argmin_v ||points @ v|| over {v >= 0, weights^T v = 1} (weights > 0), exactly, for any
    matrix `points` (one point per column, any rank).

    NNLS (Lawson & Hanson 1974, ch. 23) on min_{x >= 0} ||points x||^2 + gamma^2 (weights^T x - 1)^2
    gives v = x / (weights^T x): its optimality conditions, points^T points x =
    gamma^2 (1 - weights^T x) weights + mu with mu >= 0 and mu_i x_i = 0, are those of the min-norm
    problem with multiplier gamma^2 (1 - weights^T x) / weights^T x. gamma balances the two terms.
    """
    from scipy.optimize import nnls  # on use: registering the algorithms imports no scipy

    gamma = max(float(np.sqrt(np.max(np.sum(points * points, axis=0)))), 1.0)
    system = np.vstack([points, gamma * weights])
    target = np.zeros(len(system))
    target[-1] = gamma
    x = nnls(system, target, maxiter=50 * len(weights))[0]
    return x / (weights @ x)


def min_norm_point(gram: np.ndarray) -> np.ndarray:
    """argmin_{p in simplex} p^T H p: the weights of the min-norm point of the gradients' hull."""
    gram = np.asarray(gram, dtype=np.float64)
    m = len(gram)
    if m == 1:
        return np.ones(1)
    if m == 2:  # p_1 = <g_2 - g_1, g_2> / ||g_1 - g_2||^2, each weight from its own formula
        curvature = gram[0, 0] - 2 * gram[0, 1] + gram[1, 1]
        if curvature <= 0:  # g1 == g2: every point of the segment is the same vector
            return np.full(2, 0.5)
        p = np.clip(np.array([gram[1, 1] - gram[0, 1], gram[0, 0] - gram[0, 1]]) / curvature, 0, 1)
        return p / p.sum()
    norms = gradient_norms(gram)
    zero = negligible(norms)
    if np.any(zero):  # a zero gradient is the min-norm point
        return zero / zero.sum()
    scaled = ScaledProblem.of(gram, norms)
    return scaled.simplex_weights(min_norm_weights(scaled.units, scaled.weights))


def conflict_averse_dual(gram: np.ndarray, anchor: np.ndarray, c: float) -> np.ndarray:
    """argmin_{p in simplex} p^T H anchor + c ||g0|| sqrt(p^T H p), with ||g0||^2 = anchor^T H anchor.

    This is the dual of max_d min_i <g_i, d> s.t. ||d - g0|| <= c ||g0|| (CAGrad, Liu et al. 2021,
    Eq. 4 and its dual; RACO, Chen et al. 2026, with a preference-weighted anchor).
    """
    gram = np.asarray(gram, dtype=np.float64)
    anchor = np.asarray(anchor, dtype=np.float64)
    m = len(gram)
    linear = gram @ anchor
    radius = c * float(np.sqrt(max(anchor @ linear, 0.0)))
    if m == 1:
        return np.ones(1)
    if radius == 0.0:  # the objective is linear: a vertex of the simplex
        return np.eye(m)[int(np.argmin(linear))]
    if m == 2:
        return _dual_two_objectives(gram, anchor, radius)
    norms = gradient_norms(gram)
    zero = negligible(norms)
    if np.any(zero):  # the objective is 1-homogeneous: all on the other gradients, or all on these
        p = np.zeros(m)
        p[~zero] = conflict_averse_dual(gram[np.ix_(~zero, ~zero)], anchor[~zero], c)
        return p if p @ linear + radius * np.sqrt(max(p @ gram @ p, 0.0)) < 0 else zero / zero.sum()
    scaled = ScaledProblem.of(gram, norms)
    y0 = scaled.units @ (anchor / scaled.weights)  # g0 = n_min y0
    return scaled.simplex_weights(_dual_by_active_set(scaled, y0, c))


def _dual_two_objectives(gram: np.ndarray, anchor: np.ndarray, radius: float) -> np.ndarray:
    """m = 2 in closed form, with the gradients written in the plane they span. On the segment
    x = p_1 g_1 + p_2 g_2 the objective <x, g0> + radius ||x|| is convex; with d the unit vector
    from g_1 to g_2, its derivative along d vanishes where <d, x> / ||x|| = gamma,
    gamma = -<d, g0> / radius. Writing x = s d + (the point of the line nearest 0), at distance h
    from 0, that is s = gamma h / sqrt(1 - gamma^2): the kink x = 0 when the gradients are opposite
    (h = 0), a vertex when |gamma| >= 1. s clipped to the segment [s_1, s_2] gives
    p = (s_2 - s, s - s_1) / (s_2 - s_1), each weight from its own distance."""
    n1, n2 = gradient_norms(gram)
    cosine = float(np.clip(gram[0, 1] / n1 / n2, -1.0, 1.0)) if n1 > 0 and n2 > 0 else 0.0
    g1 = np.array([n1, 0.0])
    # 1 - |cosine| at rounding level is zero, as the eigenvalues of K in `ScaledProblem`
    sine = np.sqrt(1.0 - cosine**2) if 1.0 - abs(cosine) > 4 * EPS else 0.0
    g2 = n2 * np.array([cosine, sine])
    length = float(np.hypot(*(g2 - g1)))
    if length == 0.0:  # g1 == g2: every point of the segment is the same vector
        return np.full(2, 0.5)
    d = (g2 - g1) / length
    gamma = -float(d @ (anchor[0] * g1 + anchor[1] * g2)) / radius
    start, end = float(g1 @ d), float(g2 @ d)  # s_1, s_2
    if abs(gamma) >= 1.0:
        s = end if gamma > 0 else start
    else:
        h = abs(g1[0] * d[1] - g1[1] * d[0])
        s = float(np.clip(gamma * h / np.sqrt(1.0 - gamma**2), start, end))
    return np.array([end - s, s - start]) / (end - start)


# The dual in the scaled variables (m >= 3): with x = sum_i v_i u_i = sum_i p_i g_i / n_min and
# g0 = n_min y0, the objective is n_min^2 phi(v), phi(v) = <x, y0> + radius ||x||, radius = c ||y0||.


def _scaled_objective(scaled: ScaledProblem, y0: np.ndarray, radius: float, v: np.ndarray) -> float:
    """phi(v), with x computed as a vector (no cancellation in a quadratic form)."""
    x = scaled.units @ v
    return float(x @ y0 + radius * np.sqrt(x @ x))


def _dual_by_active_set(scaled: ScaledProblem, y0: np.ndarray, c: float) -> np.ndarray:
    """m >= 3, exact. Since sqrt(q) = min_{s>0} q/(2s) + s/2, with t = s / radius the problem is
    min_t psi(t), psi(t) = radius^2 t/2 + min_v [<x, y0> + ||x||^2 / (2t)], convex in t. The inner
    problem is the min-norm point of the points u_i + t w_i y0 (`_qp_at`), and psi'(t) has the
    sign of (radius t)^2 - ||x||^2. On a fixed face the inner solution is affine in t, so
    psi'(t) = 0 has a closed form there (`_face_stationary_t`). Iterate: NNLS at t finds the
    face, the closed form gives the next t, until NNLS at that t stays on the face: then v is the
    exact optimum (typically after two to four solves). The signs of psi' bracket the optimum and a
    step outside the bracket is replaced by bisection in log t, so the iteration also converges
    where faces are degenerate; it stops there when psi' vanishes to rounding (or after
    `MAX_STEPS` solves, never seen), and then also tries the kink t = 0.
    """
    radius = c * float(np.sqrt(y0 @ y0))
    # Where x can vanish, psi(t) <= psi(0) + radius^2 t / 2: below this t that is less than 1e-15
    # of the value (1 + c) ||y0|| at the shortest gradient's vertex. Bisection from 0 starts here.
    floor = 2e-15 * (1 + c) / (c * radius)
    lo, hi = 0.0, np.inf
    t = 1.0 / c  # s = ||g0||
    v = _qp_at(scaled, y0, t)
    visited = [v]
    for _ in range(MAX_STEPS):
        x = scaled.units @ v
        slope = (radius * t) ** 2 - x @ x
        if abs(slope) <= ROUNDING * v.sum() ** 2:
            break
        lo, hi = (lo, t) if slope > 0 else (t, hi)
        t_face = _face_stationary_t(scaled, y0, radius, v > 0)
        on_face = t_face is not None and lo < t_face < hi
        if on_face:
            t_next = t_face
        elif np.isfinite(hi):
            t_next = float(np.sqrt(max(lo, floor) * hi))
        else:
            t_next = 16 * lo
        v_next = _qp_at(scaled, y0, t_next)
        if on_face and np.array_equal(v_next > 0, v > 0):  # the face's stationary point: exact
            return v_next
        visited.append(v_next)
        t, v = t_next, v_next
    visited.append(_qp_at(scaled, y0, 0.0))  # the kink, where x vanishes
    return min(visited, key=lambda v: _scaled_objective(scaled, y0, radius, v))


def _qp_at(scaled: ScaledProblem, y0: np.ndarray, t: float) -> np.ndarray:
    """argmin_v <x, y0> + ||x||^2 / (2t) = the min-norm point of the points u_i + t w_i y0."""
    return min_norm_weights(scaled.units + t * np.outer(y0, scaled.weights), scaled.weights)


def _face_stationary_t(
    scaled: ScaledProblem, y0: np.ndarray, radius: float, free: np.ndarray
) -> float | None:
    """The t where psi'(t) = 0 on the face where only `free` coordinates may be positive (None if
    psi' has no zero there).

    On the face, the minimiser of <x, y0> + ||x||^2 / (2t) subject to weights^T v = 1 is
    v0 + t v1 (least squares on the KKT system, so a rank-deficient face gives its minimum-norm
    minimiser), with <x0, x1> = 0, and (radius t)^2 = ||x||^2 = ||x0||^2 + t^2 ||x1||^2 gives
    t^2 = ||x0||^2 / (radius^2 - ||x1||^2).
    """
    units = scaled.units[:, free]
    w = scaled.weights[free]
    size = float(np.sqrt(w @ w))  # the constraint as (w / |w|)^T v = 1 / |w|, for scale
    k = len(w)
    kkt = np.zeros((k + 1, k + 1))
    kkt[:k, :k] = units.T @ units
    kkt[:k, k] = kkt[k, :k] = w / size
    rhs = np.zeros((k + 1, 2))
    rhs[k, 0] = 1.0 / size
    rhs[:k, 1] = -(units.T @ y0)
    solution = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:k]
    x0, x1 = units @ solution[:, 0], units @ solution[:, 1]
    if radius**2 <= x1 @ x1:
        return None
    return float(np.sqrt((x0 @ x0) / (radius**2 - x1 @ x1)))

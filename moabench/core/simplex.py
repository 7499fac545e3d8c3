"""Exact solvers for the small problems over the probability simplex that the rules need.

- `min_norm_point(H)`: argmin_{p in simplex} p^T H p (MGDA, GAPO). Closed form for m = 2,
  quadprog's exact active-set QP otherwise.
- `conflict_averse_dual(H, anchor, c)`: argmin_{p in simplex} p^T H anchor + c ||g0|| sqrt(p^T H p),
  g0 = sum_i anchor_i g_i (the dual of CAGrad and RACO). Closed form for m = 2 (a quadratic in
  lambda); for m >= 3 an exact active-set method built on quadprog (see `_dual_by_active_set`).

Every function takes the m x m Gram matrix H_ij = <g_i, g_j> (float64) and never the gradients.
"""

from __future__ import annotations

import numpy as np
import quadprog
from scipy.optimize import minimize_scalar

#: Relative ridge added to H so that quadprog sees a positive-definite matrix (see the notes).
RIDGE = 1e-10


def _ridged(gram: np.ndarray) -> np.ndarray:
    scale = max(float(np.trace(gram)) / len(gram), np.finfo(np.float64).tiny)
    return gram + RIDGE * scale * np.eye(len(gram))


def simplex_qp(quadratic: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """argmin_{p in simplex} 1/2 p^T Q p + l^T p for a positive-definite Q (quadprog, exact)."""
    m = len(linear)
    constraints = np.hstack([np.ones((m, 1)), np.eye(m)])  # sum p = 1 (equality), p >= 0
    bounds = np.concatenate([[1.0], np.zeros(m)])
    solution = quadprog.solve_qp(quadratic, -linear, constraints, bounds, meq=1)[0]
    solution = np.clip(solution, 0.0, None)
    return solution / solution.sum()


def min_norm_point(gram: np.ndarray) -> np.ndarray:
    """argmin_{p in simplex} p^T H p: the weights of the min-norm point of the gradients' hull."""
    gram = np.asarray(gram, dtype=np.float64)
    m = len(gram)
    if m == 1:
        return np.ones(1)
    if m == 2:
        curvature = gram[0, 0] - 2 * gram[0, 1] + gram[1, 1]
        if curvature <= 0:  # g1 == g2: every point of the segment is the same vector
            return np.full(2, 0.5)
        first = np.clip((gram[1, 1] - gram[0, 1]) / curvature, 0.0, 1.0)
        return np.array([first, 1.0 - first])
    return simplex_qp(2 * _ridged(gram), np.zeros(m))


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
        return _dual_two_objectives(gram, linear, radius)
    return _dual_by_active_set(_ridged(gram), linear, radius)


def _dual_objective(gram: np.ndarray, linear: np.ndarray, radius: float, p: np.ndarray) -> float:
    return float(p @ linear + radius * np.sqrt(max(p @ gram @ p, 0.0)))


def _dual_two_objectives(gram: np.ndarray, linear: np.ndarray, radius: float) -> np.ndarray:
    """m = 2: with p = (lam, 1 - lam), setting the derivative to zero and squaring gives a quadratic
    in lam; the optimum is the best of {0, 1} and its real roots in [0, 1]."""
    a = gram[0, 0] - 2 * gram[0, 1] + gram[1, 1]  # p^T H p = a lam^2 + b lam + c0
    b = 2 * (gram[0, 1] - gram[1, 1])
    c0 = gram[1, 1]
    slope = linear[0] - linear[1]  # p^T linear = linear[1] + slope * lam
    k2, s2 = radius**2, slope**2
    roots = np.roots(
        [4 * k2 * a * a - 4 * s2 * a, 4 * k2 * a * b - 4 * s2 * b, k2 * b * b - 4 * s2 * c0]
    )
    candidates = [0.0, 1.0] + [
        float(r.real) for r in np.atleast_1d(roots) if abs(r.imag) < 1e-12 and 0.0 <= r.real <= 1.0
    ]
    points = [np.array([lam, 1.0 - lam]) for lam in candidates]
    return min(points, key=lambda p: _dual_objective(gram, linear, radius, p))


def _dual_by_active_set(gram: np.ndarray, linear: np.ndarray, radius: float) -> np.ndarray:
    """m >= 3, exact. Since sqrt(q) = min_{s>0} q/(2s) + s/2, the problem is
    min_{s>0} [radius*s/2 + min_p (p^T linear + radius/(2s) p^T H p)]: a QP for each s, convex in s.
    On a fixed active set the QP's solution is affine in t = s/radius, p = p0 + t p1 with
    p0^T H p1 = 0, and the optimality condition s^2 = p^T H p gives t^2 = Q0 / (radius^2 - Q2) in
    closed form. Alternate: quadprog at s finds the active set, the closed form finds s on it,
    until the active set stops changing (typically two or three QPs). A safeguarded 1-D search over
    s takes over if that does not settle.
    """
    s = float(np.sqrt(np.mean(np.diag(gram))))
    for _ in range(20):
        p = simplex_qp((radius / s) * gram, linear)
        s_new = _exact_s_on_face(gram, linear, radius, p > 1e-12)
        if s_new is None:
            break
        if abs(s_new - s) <= 1e-12 * s:
            return simplex_qp((radius / s_new) * gram, linear)
        s = s_new
    return _dual_by_line_search(gram, linear, radius)


def _exact_s_on_face(
    gram: np.ndarray, linear: np.ndarray, radius: float, free: np.ndarray
) -> float | None:
    """The optimal s on the face of the simplex where only `free` coordinates are positive."""
    h_inv = np.linalg.inv(gram[np.ix_(free, free)])
    ones = np.ones(int(free.sum()))
    h_inv_ones, h_inv_linear = h_inv @ ones, h_inv @ linear[free]
    total = ones @ h_inv_ones
    p0 = h_inv_ones / total
    p1 = -h_inv_linear + (ones @ h_inv_linear / total) * h_inv_ones
    q0 = p0 @ gram[np.ix_(free, free)] @ p0
    q2 = p1 @ gram[np.ix_(free, free)] @ p1
    if radius**2 <= q2:
        return None
    return float(radius * np.sqrt(q0 / (radius**2 - q2)))


def _dual_by_line_search(gram: np.ndarray, linear: np.ndarray, radius: float) -> np.ndarray:
    def solution(log_s: float) -> np.ndarray:
        return simplex_qp((radius / np.exp(log_s)) * gram, linear)

    def envelope(log_s: float) -> float:
        s = np.exp(log_s)
        p = solution(log_s)
        return float(p @ linear + radius / (2 * s) * (p @ gram @ p) + radius * s / 2)

    centre = 0.5 * np.log(np.mean(np.diag(gram)))
    best = minimize_scalar(envelope, bounds=(centre - 30, centre + 30), method="bounded",
                           options={"xatol": 1e-10})  # fmt: skip
    return solution(best.x)

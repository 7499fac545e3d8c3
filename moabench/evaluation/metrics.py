"""Pareto-front metrics, on objective vectors already in the normalised minimisation space.

`ObjectiveSpace.normalize` is the only place that handles maximised objectives and scale: every
function here takes points where the task's ideal point is 0 and its nadir 1, all minimised.
Hypervolume, IGD, IGD+ and GD come from moocore/pymoo; cardinality, sparsity, spacing and the
preference metrics, which those libraries lack, are written here. Sparsity and spacing describe a
front's shape and are never used to rank (a one-point front scores 0 on both, as a perfect one).
"""

from __future__ import annotations

import math

import moocore
import numpy as np
from pymoo.indicators.gd import GD
from pymoo.indicators.igd import IGD
from pymoo.indicators.igd_plus import IGDPlus
from scipy.stats import spearmanr

from moabench.core.task import HV_REFERENCE


def nondominated(points: np.ndarray) -> np.ndarray:
    """The non-dominated subset of `points` (n, m), duplicates kept once, sorted."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 0:
        return points
    unique = np.unique(points, axis=0)
    return unique[moocore.is_nondominated(unique)]


def nondominated_mask(points: np.ndarray) -> np.ndarray:
    """Which rows of `points` (n, m) are non-dominated (a duplicate of a non-dominated point is)."""
    points = np.asarray(points, dtype=np.float64)
    front = {tuple(p) for p in nondominated(points)}
    return np.array([tuple(p) in front for p in points], dtype=bool)


#: Non-dominated points closer than this (largest coordinate gap, normalised space) count once.
CARDINALITY_TOLERANCE = 1e-6


def cardinality(points: np.ndarray, tolerance: float = CARDINALITY_TOLERANCE) -> int:
    """The number of distinct non-dominated points, a point within `tolerance` (in every
    objective) of one already counted, in sorted order, counting with it: 1 for an algorithm
    that reaches the same point whatever the preference (where sparsity and spacing read 0, as
    for a perfect front), as the multi-objective RL benchmarks report it, and floating-point
    noise between runs never counted as a point."""
    kept: list[np.ndarray] = []
    for point in nondominated(points):
        if all(np.max(np.abs(point - other)) > tolerance for other in kept):
            kept.append(point)
    return len(kept)


def hypervolume(points: np.ndarray, reference: float = HV_REFERENCE) -> float:
    """Volume dominated by `points` and bounded by the reference point (reference, ..., reference).
    Points that do not strictly dominate the reference point contribute nothing."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 0:
        return 0.0
    return float(moocore.hypervolume(points, ref=np.full(points.shape[1], reference)))


def igd(points: np.ndarray, reference_front: np.ndarray) -> float:
    """Inverted generational distance (pymoo): mean distance from each reference point to `points`."""
    return float(IGD(reference_front)(np.asarray(points, dtype=np.float64)))


def igd_plus(points: np.ndarray, reference_front: np.ndarray) -> float:
    """IGD+ (Ishibuchi et al. 2015, pymoo): IGD with dominance-compliant distances."""
    return float(IGDPlus(reference_front)(np.asarray(points, dtype=np.float64)))


def gd(points: np.ndarray, reference_front: np.ndarray) -> float:
    """Generational distance (pymoo): mean distance from each of `points` to the reference front."""
    return float(GD(reference_front)(np.asarray(points, dtype=np.float64)))


def sparsity(points: np.ndarray) -> float:
    """PGMORL sparsity (Xu et al., ICML 2020, Eq. 6) of the non-dominated set P:
    1/(|P| - 1) * sum_j sum_i (P~_j(i) - P~_j(i+1))^2, P~_j the sorted values of objective j.
    Lower is denser; 0 for fewer than two points."""
    front = nondominated(points)
    if len(front) < 2:
        return 0.0
    gaps = np.diff(np.sort(front, axis=0), axis=0)
    return float((gaps**2).sum() / (len(front) - 1))


def spacing(points: np.ndarray) -> float:
    """Schott's spacing (J. R. Schott, "Fault tolerant design using single and multicriteria
    genetic algorithm optimization", MSc thesis, MIT, 1995) of the non-dominated set:
    S = sqrt(1/(n-1) * sum_i (d_i - mean(d))^2), d_i = min_{k != i} sum_j |f_j^i - f_j^k| (L1
    distance to the nearest neighbour). 0 is evenly spaced; 0 for fewer than two points."""
    front = nondominated(points)
    if len(front) < 2:
        return 0.0
    distances = np.abs(front[:, None, :] - front[None, :, :]).sum(axis=2)
    np.fill_diagonal(distances, np.inf)
    return float(np.std(distances.min(axis=1), ddof=1))


def inner_product(points: np.ndarray, preferences: np.ndarray) -> float:
    """Mean over the grid of w^T f (each run's point against its own preference); lower is better."""
    return float(np.mean(np.sum(np.asarray(preferences) * np.asarray(points), axis=1)))


def tchebycheff(points: np.ndarray, preferences: np.ndarray) -> float:
    """Mean over the grid of the Tchebycheff scalarisation max_j w_j f_j (each run's point
    against its own preference; the ideal point is 0 in this space); lower is better."""
    return float(np.mean(np.max(np.asarray(preferences) * np.asarray(points), axis=1)))


def rank_correlation(points: np.ndarray, preferences: np.ndarray) -> float:
    """Preference following: Spearman correlation between w_j and -f_j across the grid, averaged
    over objectives (a larger weight should give a smaller normalised loss). An objective whose
    weights or values are constant contributes 0. In [-1, 1]; 1 follows preferences perfectly."""
    points, preferences = np.asarray(points), np.asarray(preferences)
    correlations = []
    for j in range(points.shape[1]):
        if np.ptp(points[:, j]) == 0 or np.ptp(preferences[:, j]) == 0:
            correlations.append(0.0)
            continue
        value = spearmanr(preferences[:, j], -points[:, j]).statistic
        correlations.append(0.0 if math.isnan(value) else float(value))
    return float(np.mean(correlations))


def expected_utility(points: np.ndarray, preferences: np.ndarray) -> float:
    """Mean over the grid's preferences w of max over the front of the utility -w^T f.
    Higher is better (0 would mean the ideal point is reached for every w)."""
    front = nondominated(points)
    utilities = -np.asarray(preferences) @ front.T  # (n_preferences, n_front)
    return float(np.mean(utilities.max(axis=1)))


def checkpoint_front(
    steps: np.ndarray, points: np.ndarray, fraction: float = 0.95
) -> tuple[float, float]:
    """Fronts over checkpoints (the dynamic-weighting paper's protocol): every evaluation point
    along training, `points[k]` at training step `steps[k]`, from every run of one front.
    Returns (hypervolume of all of them, the first step at which the points evaluated so far reach
    `fraction` of that hypervolume: "steps to reach the front"); (0, nan) without points."""
    steps, points = np.asarray(steps, dtype=np.float64), np.asarray(points, dtype=np.float64)
    total = hypervolume(points) if len(points) else 0.0
    if total == 0.0:
        return total, math.nan
    for step in np.unique(steps):
        if hypervolume(points[steps <= step]) >= fraction * total:
            return total, float(step)
    return total, float(steps.max())


#: The metrics `front_metrics` returns, in leaderboard column order, with True where higher is better.
METRICS = {
    "hypervolume": True,
    "igd_plus": False,
    "igd": False,
    "gd": False,
    "sparsity": False,  # descriptive only: the leaderboard never ranks by sparsity or spacing
    "spacing": False,
    "inner_product": False,
    "tchebycheff": False,
    "rank_correlation": True,
    "expected_utility": True,
    "cardinality": True,
}


def front_metrics(
    points: np.ndarray, preferences: np.ndarray, reference_front: np.ndarray | None = None
) -> dict[str, float]:
    """Every metric of one front: `points[k]` is the final point of the run at `preferences[k]`.
    IGD, IGD+ and GD are nan without a reference front; an empty front has hypervolume 0,
    no non-dominated points and nan elsewhere."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 0:
        return {name: math.nan for name in METRICS} | {"hypervolume": 0.0, "cardinality": 0.0}
    has_reference = reference_front is not None and len(reference_front) > 0
    return {
        "hypervolume": hypervolume(points),
        "igd_plus": igd_plus(points, reference_front) if has_reference else math.nan,
        "igd": igd(points, reference_front) if has_reference else math.nan,
        "gd": gd(points, reference_front) if has_reference else math.nan,
        "sparsity": sparsity(points),
        "spacing": spacing(points),
        "inner_product": inner_product(points, preferences),
        "tchebycheff": tchebycheff(points, preferences),
        "rank_correlation": rank_correlation(points, preferences),
        "expected_utility": expected_utility(points, preferences),
        "cardinality": float(cardinality(points)),
    }

"""MGDA (Desideri 2012; Sener & Koltun, NeurIPS 2018, Eq. 3): the min-norm point of the convex
hull of the per-objective gradients, a common descent direction unless the point is
Pareto-stationary (then the direction is zero, as when one gradient is zero). It ignores the
preference vector. The min-norm problem is solved exactly for any Gram matrix, whatever the scales of
the gradients (`moabench.core.simplex.min_norm_point`): the weights do not depend on the scale of H.
"""

from __future__ import annotations

import numpy as np

from moabench.core.algorithm import GramRule, register_algorithm
from moabench.core.simplex import min_norm_point


@register_algorithm("mgda")
class MGDA(GramRule):
    """MGDA: the min-norm point of the gradients' convex hull (ignores the preference)."""

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        return min_norm_point(gram)

"""Linear scalarization: the baseline (DPO-LW on preference data, MORLHF in online RL).

The update follows the gradient of sum_i w_i L_i, so a = w. It cannot reach the non-convex parts
of a Pareto front, which the analytic non-convex problems measure.
"""

from __future__ import annotations

import numpy as np

from moabench.algorithm import GramRule, register_algorithm


@register_algorithm("ls")
class LinearScalarization(GramRule):
    """Linear scalarization (DPO-LW / MORLHF): minimise sum_i w_i L_i."""

    needs_gram = False

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        return self.preference.copy()

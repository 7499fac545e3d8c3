"""Linear scalarization: the baseline (DPO-LW on preference data, MORLHF in online RL).

The update follows the gradient of sum_i w_i L_i, so a = w. Online (MORLHF), the default order
scalarises the rewards, r = sum_i w_i r_i, before the advantage estimator (trl's GRPO default);
`order="normalize-then-sum"` weighs the per-objective advantages instead (GDPO). It cannot reach the non-convex parts
of a Pareto front, which the analytic non-convex problems measure.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moabench.core.algorithm import GramRule, register_algorithm


class LinearScalarizationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order: Literal["sum-then-normalize", "normalize-then-sum"] = Field(
        "sum-then-normalize",
        description="online: advantage of sum_i w_i r_i (MORLHF, trl's default), or sum_i w_i A_i",
    )


@register_algorithm("ls")
class LinearScalarization(GramRule):
    """Linear scalarization (DPO-LW / MORLHF): minimise sum_i w_i L_i."""

    Params = LinearScalarizationParams
    needs_gram = False

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        return self.preference.copy()

    def online_reward(self, rewards: np.ndarray) -> np.ndarray | None:
        """MORLHF: r = sum_i w_i r_i before the advantage estimator (the default order)."""
        if self.params.order == "sum-then-normalize":
            return rewards @ self.preference[:, None]
        return None

"""A third-party moabench plugin: a rule, a steerable method and a task, registered through entry
points."""

import numpy as np
import torch

from moabench import (
    GramRule,
    ObjectiveSpace,
    SteerableMethod,
    register_algorithm,
    register_task,
)
from moabench.analytic import AnalyticProblem


@register_algorithm("half-sum")
class HalfSum(GramRule):
    """Half the preference-weighted sum of the objectives (a toy rule)."""

    needs_gram = False

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        return 0.5 * self.preference


@register_algorithm("tempered-mod")
class TemperedMOD(SteerableMethod):
    """MOD at temperature 2: sample from softmax(sum_i w_i log pi_i / 2) (a toy steerable method)."""

    combines = "log_probs"

    def combine(self, values):
        return 0.5 * super().combine(values)


@register_task("two-parabolas")
class TwoParabolas(AnalyticProblem):
    """Two parabolas f_i(x) = ||x - c_i||^2 with centres (-1, 0) and (1, 0)."""

    n_var = 2
    space = ObjectiveSpace(
        names=("f1", "f2"), maximize=(False, False), ideal=(0.0, 0.0), nadir=(4.0, 4.0)
    )

    def lower(self) -> torch.Tensor:
        return torch.full((2,), -2.0, dtype=torch.float64)

    def upper(self) -> torch.Tensor:
        return torch.full((2,), 2.0, dtype=torch.float64)

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        centres = torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
        return ((x.unsqueeze(-2) - centres) ** 2).sum(dim=-1)

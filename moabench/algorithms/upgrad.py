"""UPGrad (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16700),
through torchjd's `UPGradWeighting` with the preference vector: each gradient is projected onto
the dual cone of all gradients (so no objective gets worse to first order) and the projections
are combined with the preference weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moabench.core.algorithm import GramRule, register_algorithm


@register_algorithm("upgrad")
class UPGrad(GramRule):
    """UPGrad (torchjd): preference-weighted projections onto the gradients' dual cone."""

    def __init__(self, preference: Any, **params: Any) -> None:
        super().__init__(preference, **params)
        import torch  # on use: registering the algorithms (`moabench list`) imports no torch
        from torchjd.aggregation import UPGradWeighting

        self._weighting = UPGradWeighting(pref_vector=torch.as_tensor(self.preference))

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        import torch

        return self._weighting(torch.as_tensor(gram)).numpy().astype(np.float64)

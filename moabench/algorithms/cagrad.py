"""CAGrad (Liu et al., NeurIPS 2021, arXiv 2110.14048).

The direction maximises the worst objective's improvement within a ball around the average
gradient g0 = mean_i g_i: max_d min_i <g_i, d> s.t. ||d - g0|| <= c ||g0|| (Eq. 4). Its dual is
p = argmin_{simplex} G_p^T g0 + c ||g0|| ||G_p||, G_p = sum_i p_i g_i, and the direction is
d = g0 + c ||g0|| G_p / ||G_p|| (Algorithm 1), so a = anchor + (c ||g0|| / ||G_p||) p. The official
code divides d by (1 + c^2) ("rescale", on by default); torchjd's `CAGrad` does not.

`conflict_averse_coefficients` is written once here for any anchor and serves RACO too.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moabench.core.algorithm import GramRule, register_algorithm
from moabench.core.simplex import conflict_averse_dual


def conflict_averse_coefficients(
    gram: np.ndarray, anchor: np.ndarray, c: float, clip: bool = False
) -> np.ndarray:
    """a = anchor + (c ||g0|| / ||G~||) p~ with g0 = sum anchor_i g_i and p the dual solution;
    `clip` uses p~ = min(p, anchor) elementwise, not renormalised (RACO). a = anchor when G~ = 0."""
    p = conflict_averse_dual(gram, anchor, c)
    if clip:
        p = np.minimum(p, anchor)
    anchor_norm = np.sqrt(max(anchor @ gram @ anchor, 0.0))
    direction_norm = np.sqrt(max(p @ gram @ p, 0.0))
    if direction_norm <= 1e-12 * np.sqrt(max(np.trace(gram), 0.0)) or direction_norm == 0.0:
        return anchor.copy()
    return anchor + (c * anchor_norm / direction_norm) * p


class CAGradParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    c: float = Field(0.4, ge=0, description="radius of the ball around the average gradient")
    rescale: bool = Field(True, description="divide the direction by 1 + c^2 (official code)")


@register_algorithm("cagrad")
class CAGrad(GramRule):
    """CAGrad: the best worst-case direction in a ball around the average gradient (ignores w)."""

    Params = CAGradParams

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        m = len(gram)
        coefficients = conflict_averse_coefficients(gram, np.full(m, 1.0 / m), self.params.c)
        return coefficients / (1 + self.params.c**2) if self.params.rescale else coefficients

"""CAGrad (Liu et al., NeurIPS 2021, arXiv 2110.14048).

The direction maximises the worst objective's improvement within a ball around the average
gradient g0 = mean_i g_i: max_d min_i <g_i, d> s.t. ||d - g0|| <= c ||g0|| (Eq. 4). Its dual is
p = argmin_{simplex} G_p^T g0 + c ||g0|| ||G_p||, G_p = sum_i p_i g_i, and the direction is
d = g0 + c ||g0|| G_p / ||G_p|| (Algorithm 1), so a = anchor + (c ||g0|| / ||G_p||) p. The official
code divides d by (1 + c^2) ("rescale", on by default); torchjd's `CAGrad` does not.

`conflict_averse_coefficients` is written once here for any anchor and serves RACO too. The dual
is solved exactly for any Gram matrix, whatever the scales of the gradients
(`moabench.core.simplex.conflict_averse_dual`); when G_p vanishes to the precision of H (the dual
optimum is then Pareto-stationary) the direction is g0, as in the official code.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moabench.core.algorithm import GramRule, register_algorithm
from moabench.core.simplex import NEGLIGIBLE, conflict_averse_dual, gradient_norms

#: G~ counts as zero below this fraction delta of sum_i p~_i ||g_i|| (its length without
#: cancellation). H carries rounding of about 1e-16 of that length squared, so it fixes the
#: direction G~ / ||G~|| only to about 1e-16 / delta^2 (1e-4 here), and the coefficients grow as
#: 1 / delta, which float32 gradients could not combine.
ZERO_DIRECTION = 1e-6


def conflict_averse_coefficients(
    gram: np.ndarray, anchor: np.ndarray, c: float, clip: bool = False
) -> np.ndarray:
    """a = anchor + (c ||g0|| / ||G~||) p~ with g0 = sum anchor_i g_i and p the dual solution;
    `clip` uses p~ = min(p, anchor) elementwise, not renormalised (RACO). a = anchor when G~ = 0
    to the precision of H (`ZERO_DIRECTION`, or shorter than the negligible gradients of
    `moabench.core.simplex`), as the official code's lambda = c ||g0|| / (||G~|| + 1e-8) leaves g0
    (nyuv2/utils.py)."""
    p = conflict_averse_dual(gram, anchor, c)
    if clip:
        p = np.minimum(p, anchor)
    anchor_norm = np.sqrt(max(anchor @ gram @ anchor, 0.0))
    direction_norm = np.sqrt(max(p @ gram @ p, 0.0))
    norms = gradient_norms(gram)
    if direction_norm <= max(ZERO_DIRECTION * (p @ norms), NEGLIGIBLE * norms.max()):
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

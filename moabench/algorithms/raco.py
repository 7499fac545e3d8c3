"""RACO (Chen et al., ICML 2026, arXiv 2602.02495; repo PeterLauLukChen/RACO): "CAGrad-Clip".

CAGrad around the preference-weighted anchor g0 = sum_i w_i g_i, with the dual solution clipped to
the preference: p~ = min(p, w) elementwise (not renormalised), direction
g0 + c ||g0|| G~ / ||G~||, G~ = sum_i p~_i g_i (g0 alone when G~ = 0). So a = w + (c ||g0|| / ||G~||) p~.
Defaults from the notes: c = 0.4, no 1/(1 + c^2) rescale. Clip off is weighted-anchor CAGrad; c = 0
is linear scalarization.

When the clip changes the direction: G~ / ||G~|| equals G_p / ||G_p|| exactly when p~ is
proportional to p, that is when w restricted to the support of p is proportional to p (for linearly
independent gradients). That always holds at a vertex of the simplex (and when p = w), so for m = 2
the clip changes the direction only when p is interior. For m >= 3 it also changes it on an edge or
a face of the simplex: p = (1/2, 1/2, 0) with w = (0.6, 0.2, 0.2) gives p~ = (1/2, 0.2, 0).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moabench.algorithms.cagrad import conflict_averse_coefficients
from moabench.core.algorithm import GramRule, Paradigm, register_algorithm


class RACOParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    c: float = Field(0.4, ge=0, description="radius of the ball around the weighted anchor")
    clip: bool = Field(True, description="clip the dual weights to the preference, p~ = min(p, w)")


@register_algorithm("raco")
class RACO(GramRule):
    """RACO: CAGrad around the preference-weighted gradient, dual weights clipped to w."""

    Params = RACOParams
    home_paradigm = Paradigm.PREFERENCE

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        return conflict_averse_coefficients(
            gram, self.preference, self.params.c, clip=self.params.clip
        )

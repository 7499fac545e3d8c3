"""GAPO and P-GAPO (Li et al., ACL 2025, arXiv 2507.01915).

GAPO rescales each gradient, g_i^N = g_i / ||g_i||^p (Sec. 3.2), solves the MGDA problem on the
rescaled gradients, alpha = argmin_{simplex} || sum_i alpha_i g_i^N ||^2, and steps along
sum_i alpha_i g_i^N, so a_i = alpha_i / ||g_i||^p ("main" variant, the main text). Theorem 3.3:
the progress on objective i is proportional to ||g_i||^p. The appendix (Eq. 17) applies alpha to
the raw losses instead, a_i = alpha_i ("appendix" variant). p = 0 is plain MGDA; with m = 2 and
p = 1 the QP always gives alpha = (1/2, 1/2).

P-GAPO replaces the QP by the user's preference: a_i = w_i / ||g_i||.

alpha does not depend on the scale of H (the QP is solved exactly, `min_norm_point`), so scaling
every gradient by s scales the direction by s^(1 - p) only; with p = 1, alpha does not depend on
the length of any gradient. A zero gradient is Pareto-stationary: alpha puts all weight on it and
the step is zero.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moabench.core.algorithm import GramRule, Paradigm, register_algorithm
from moabench.core.simplex import min_norm_point


def inverse_gradient_norms(gram: np.ndarray, power: float) -> np.ndarray:
    """1 / ||g_i||^power from the Gram diagonal; 0 for a zero gradient (it has nothing to scale)."""
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    scale = np.zeros_like(norms)
    np.divide(1.0, norms**power, out=scale, where=norms > 0)
    return scale


def gapo_coefficients(gram: np.ndarray, p: int, variant: Literal["main", "appendix"]) -> np.ndarray:
    scale = inverse_gradient_norms(gram, p)
    alpha = min_norm_point(gram * scale[:, None] * scale[None, :])  # the Gram matrix of the g_i^N
    return alpha * scale if variant == "main" else alpha


class GAPOParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p: Literal[0, 1, 2] = Field(1, description="gradient rescaling power; 0 is plain MGDA")
    variant: Literal["main", "appendix"] = Field(
        "main", description="main: a = alpha/||g||^p (main text); appendix: a = alpha (Eq. 17)"
    )


@register_algorithm("gapo")
class GAPO(GramRule):
    """GAPO: MGDA on gradients rescaled by 1/||g_i||^p (ignores the preference)."""

    Params = GAPOParams
    home_paradigm = Paradigm.ONLINE

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        return gapo_coefficients(gram, self.params.p, self.params.variant)


@register_algorithm("p-gapo")
class PGAPO(GramRule):
    """P-GAPO: preference-weighted normalised gradients, a_i = w_i / ||g_i||."""

    home_paradigm = Paradigm.ONLINE

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        return self.preference * inverse_gradient_norms(gram, 1)

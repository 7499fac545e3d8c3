"""PAMA (He & Maghsudi, ECML-PKDD 2025, arXiv 2508.07768): Pareto multi-objective alignment with
"Noon PPO" advantages and a closed-form combination.

Each objective's advantage is clipped below at zero, A_i = max(A_i', 0) (Noon PPO), and zeroed
where PPO's clip is active, I(A_i) = 0 when the ratio exceeds 1 + eps, else A_i. The weights solve
min_c (sum_i c_i I(A_i))^2 over the simplex, whose value is 0 projected onto
[min_i I(A_i), max_i I(A_i)]: with Noon advantages, min_i I(A_i). That costs O(m) per token and
no gradients. `level="token"` (default) solves it per token; `level="batch"` solves it once on
the means over the batch's response tokens and applies those weights to every token (what a third-party port does; it
discards the per-sample signal). PAMA finds Pareto-stationary points and ignores the preference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from moabench.core.algorithm import AdvantageRule, register_algorithm

if TYPE_CHECKING:
    import torch


def zero_projected(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """The point of [low, high] closest to 0, elementwise."""
    import torch  # on use: registering the algorithms (`moabench list`) imports no torch

    return torch.clamp(torch.zeros_like(low), min=low, max=high)


def pama_advantage(
    advantages: torch.Tensor,
    ratios: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float = 0.2,
    level: Literal["token", "batch"] = "token",
) -> torch.Tensor:
    """Combined advantage (n, T) from per-objective advantages (m, n, T), ratios (n, T) and the
    response-token mask (n, T); `level="batch"` averages over the response tokens only."""
    import torch

    noon = advantages.clamp(min=0)
    influence = torch.where(ratios > 1 + epsilon, torch.zeros_like(noon), noon)
    if level == "token":
        return zero_projected(influence.min(dim=0).values, influence.max(dim=0).values)
    means = (influence * mask).sum(dim=(1, 2)) / mask.sum()
    weights = simplex_weights_zeroing(means)
    return torch.einsum("m,mnt->nt", weights, influence)


def simplex_weights_zeroing(values: torch.Tensor) -> torch.Tensor:
    """argmin over the simplex of (sum_i c_i v_i)^2: a mix of the smallest and largest value that
    sums to 0 when they straddle 0, else all weight on the value closest to 0."""
    import torch

    low, high = int(values.argmin()), int(values.argmax())
    weights = torch.zeros_like(values)
    if values[low] <= 0 <= values[high] and values[high] > values[low]:
        weights[low] = values[high] / (values[high] - values[low])
        weights[high] = 1 - weights[low]
    else:
        weights[low if values[low] > 0 else high] = 1.0
    return weights


class PAMAParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: Literal["token", "batch"] = Field(
        "token", description="solve the combination per token (paper) or once per batch"
    )
    epsilon: float = Field(
        0.2, gt=0, description="ratio above 1 + epsilon zeroes a token's advantage"
    )


@register_algorithm("pama")
class PAMA(AdvantageRule):
    """PAMA: Noon-PPO advantages combined in closed form, min_i max(A_i, 0) per token."""

    Params = PAMAParams

    def combine_advantages(
        self, advantages: torch.Tensor, ratios: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        return pama_advantage(advantages, ratios, mask, self.params.epsilon, self.params.level)

"""MODPO (Zhou et al., Findings of ACL 2024, arXiv 2310.03708; repo ZHZisZZ/modpo).

One DPO-style loss on the preference pairs of one objective k, with the other objectives entering
as a margin from their reward models r_{-k} (Eq. 7):

    L = -log sigmoid( (1/w_k) * [ beta * (log pi/pi_ref (y_w) - log pi/pi_ref (y_l))
                                  - w_{-k}^T (r_{-k}(x, y_w) - r_{-k}(x, y_l)) ] )

The 1/w_k scales both the policy term and the margin. The paper's stage 1 trains r_{-k} as
Bradley-Terry reward models (DPO implicit rewards) on the other objectives' labels, so the margin
is on the labels' log-odds scale. What `reward_differences` stands for at each scale:
- tiny: labels are drawn with P(y_a > y_b) = sigmoid(delta_r / label_noise), so the margin reward is
  delta_r / label_noise (`moabench.language.tiny.margin_rewards`), what a stage-1 reward model
  fitted to those labels would learn; the trainer still learns objective k only from its pairs.
  The minimiser of the expected loss is then beta * log-ratio = sum_i w_i delta_r_i / label_noise,
  the weighted target.
- small/paper: the differences of the task's scorers. The beaver reward and cost models are
  Bradley-Terry models of their labels, so on the labels' scale; a rule-based scorer (a length, a
  correctness check) has no label scale and enters in its own units.
Objective k: `trained_objective`, by default
the most-weighted objective (so w_k >= 1/m and 1/w_k stays finite; the paper uses w_k in
{0.1, 0.5, 0.9}). A tie on objective k (s = 0) gives a constant loss, hence no gradient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moabench.core.algorithm import PreferenceLoss, register_algorithm
from moabench.core.errors import ConfigError

if TYPE_CHECKING:
    import torch


def modpo_loss(
    margins: torch.Tensor,
    signs: torch.Tensor,
    reward_differences: torch.Tensor,
    weights: torch.Tensor,
    k: int,
) -> torch.Tensor:
    """Eq. 7 on a batch, with pairs oriented by objective k's label (y_w = y_a when s_k = +1)."""
    import torch.nn.functional as F  # on use: registering the algorithms imports no torch

    others = [i for i in range(len(weights)) if i != k]
    margin_rewards = (
        weights[others] @ reward_differences[others]
    )  # w_{-k}^T (r_{-k}(a) - r_{-k}(b))
    logits = signs[k] * (margins - margin_rewards) / weights[k]
    return -F.logsigmoid(logits).mean()


class MODPOParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trained_objective: int | None = Field(
        None, ge=0, description="objective whose pairs are trained on; None: the most-weighted"
    )


@register_algorithm("modpo")
class MODPO(PreferenceLoss):
    """MODPO: DPO on one objective's pairs with the others' rewards as a weighted margin."""

    Params = MODPOParams

    def __init__(self, preference: Any, **params: Any) -> None:
        super().__init__(preference, **params)
        k = self.params.trained_objective
        self.k = int(np.argmax(self.preference)) if k is None else k
        if self.k >= len(self.preference):
            raise ConfigError(
                f"algorithm 'modpo': field 'trained_objective': {self.k} is not an objective index "
                f"(the preference has {len(self.preference)} entries)"
            )
        if self.preference[self.k] == 0:
            raise ConfigError(
                f"algorithm 'modpo': objective {self.k} has weight 0, so 1/w_k is undefined; "
                "train on an objective with a positive weight"
            )

    def loss(
        self, margins: torch.Tensor, signs: torch.Tensor, reward_differences: torch.Tensor
    ) -> torch.Tensor:
        import torch

        weights = torch.as_tensor(self.preference, dtype=margins.dtype, device=margins.device)
        return modpo_loss(margins, signs, reward_differences.to(margins.dtype), weights, self.k)

"""Per-objective advantage estimators for online training, pure functions of the rewards.

Rewards come as (prompts, k, m): k responses to each prompt, m objectives. Each estimator returns
advantages of the same shape, computed for every objective separately:
- `grpo`: group-normalised, (r - mean of the group) / (std of the group + 1e-4) (Shao et al. 2024);
- `rloo`: leave-one-out, r - mean of the other k - 1 responses (Ahmadian et al. 2024);
- `reinforce`: REINFORCE with the batch mean as baseline.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Estimator = Literal["grpo", "rloo", "reinforce"]
GRPO_EPSILON = 1e-4  # trl's GRPOTrainer adds the same to the group std


def advantages(rewards: np.ndarray, estimator: Estimator) -> np.ndarray:
    """(prompts, k, m) rewards -> (prompts, k, m) advantages."""
    if estimator == "grpo":
        return (rewards - rewards.mean(axis=1, keepdims=True)) / (
            rewards.std(axis=1, ddof=1, keepdims=True) + GRPO_EPSILON
        )
    if estimator == "rloo":
        k = rewards.shape[1]
        return (k * rewards - rewards.sum(axis=1, keepdims=True)) / (k - 1)
    return rewards - rewards.mean(axis=(0, 1), keepdims=True)

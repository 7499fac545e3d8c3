"""What the preference and online trainers share: evaluation schedule, optimizer, reward checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from moabench.core.errors import ConfigError

if TYPE_CHECKING:
    from moabench.language.params import LanguageParams

#: Seed of the held-out evaluation prompts and of the responses sampled to score them.
EVALUATION_SEED = 1234
#: Evaluations along training (besides the final one): every steps // this steps.
EVALUATIONS_ALONG_TRAINING = 4


def make_optimizer(params: LanguageParams, parameters: list[torch.Tensor]) -> torch.optim.Optimizer:
    """Adam, or plain SGD: Adam's per-coordinate scaling changes the combined direction, so the
    descent guarantees of MGDA-like rules hold for SGD only."""
    if params.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=params.learning_rate)
    return torch.optim.Adam(parameters, lr=params.learning_rate)


def checked_scores(
    raw: object, objectives: Sequence[str], where: str, n: int | None = None
) -> np.ndarray:
    """Scores of n responses as float64 (n, m), or a `ConfigError` naming what is wrong with
    them (`where` names their source, such as "task 'safety': rewards()")."""
    m = len(objectives)
    try:
        rewards = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} returned non-numeric values: {str(raw)[:80]}") from None
    n = len(rewards) if n is None else n
    if rewards.shape != (n, m):
        raise ConfigError(
            f"{where} returned shape {rewards.shape} for {n} responses; expected ({n}, {m}): "
            f"one column per objective ({', '.join(objectives)})"
        )
    if not np.all(np.isfinite(rewards)):
        bad = sorted({objectives[j] for j in np.argwhere(~np.isfinite(rewards))[:, 1]})
        raise ConfigError(f"{where} returned NaN or infinite rewards for {', '.join(bad)}")
    return rewards

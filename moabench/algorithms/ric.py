"""Rewards-in-Context (Yang et al., ICML 2024, arXiv 2402.10207), as its official code runs it.

RiC trains one policy by supervised fine-tuning conditioned on the rewards of each response, then
asks it for the rewards a preference maps to:
1. **Offline**: responses scored by every reward model; each score z-normalised over the whole
   set, z_i = (r_i - mean_i) / std_i, rounded to 0.1; NLL of each response conditioned on its z.
2. **Online (MORS)**, `online_iterations` times: goals drawn for fresh prompts (`online_goals`:
   each coordinate uniform in [lo, hi], then every coordinate but the smallest set to hi),
   responses sampled conditioned on them (temperature 0.7), scored, **relabelled with the
   obtained scores** (hindsight), and kept when any z_i reaches its `quantile` (0.7) among the
   generated (`keep`), with the offline samples passing the same filter on the offline quantiles;
   the policy continues on them, with fewer steps at a lower learning rate.
3. **The policy for w**: condition on the targets r*(w) (`targets`, the official
   `map_rewards_from_preference`); `mapping="l2"` is what the official evaluation uses:
   r*_i = round(w_i / ||w||_2 * (hi - lo) + lo, 1), with lo, hi the min and max of N(0, 1) draws.
RiC needs a score for every response, so it trains online (the preference paradigm's labels are
not scores). The official lengths (20,000 offline and 4,000 online steps, lr 1.41e-4 then 1e-5)
become the task's `steps` offline, `online_steps` x `steps` online at `online_learning_rate` x its
learning rate. How the scores reach the model is the scale's (`moabench.language.ric`: text at
the end of the user's turn at the Hugging Face scales, as the official prompts write them).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moabench.core.algorithm import Paradigm, SteerableMethod, register_algorithm

#: the official code's draws of N(0, 1) for lo and hi: 50,000 at evaluation, 100,000 online
EVALUATION_DRAWS, ONLINE_DRAWS = 50_000, 100_000


class RewardsInContextParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mapping: Literal["l2", "linf", "linear"] = Field(
        "l2", description="preference -> target scores (l2: the official evaluation's)"
    )
    online_iterations: int = Field(1, ge=0, description="rounds of online MORS (official: 1)")
    quantile: float = Field(0.7, gt=0, lt=1, description="MORS keeps z_i above this quantile")
    online_steps: float = Field(0.2, gt=0, description="online steps, as a fraction of steps")
    online_learning_rate: float = Field(
        0.1, gt=0, description="online learning rate, as a fraction of the learning rate"
    )
    offline_samples: int = Field(512, ge=8, description="scored responses of the offline set")
    online_samples: int = Field(512, ge=8, description="responses generated per MORS round")


@register_algorithm("ric")
class RewardsInContext(SteerableMethod):
    """RiC: supervised training conditioned on rewards, then the rewards w maps to (steerable)."""

    Params = RewardsInContextParams
    paradigms: ClassVar[frozenset[Paradigm]] = frozenset({Paradigm.ONLINE})
    home_paradigm: ClassVar[Paradigm | None] = Paradigm.ONLINE
    combines: ClassVar[str] = "reward_conditioning"

    def targets(self) -> np.ndarray:
        """r*(w) in z units (`map_rewards_from_preference` with the evaluation's lo and hi)."""
        low, high = score_range(len(self.preference), EVALUATION_DRAWS)
        return map_preference(self.preference, low, high, self.params.mapping)

    # the steps of the training, for the scale's trainer (`moabench.language.ric`)
    @staticmethod
    def z_scores(rewards: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        return z_scores(rewards, mean, std)

    @staticmethod
    def online_goals(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
        return online_goals(rng, n, m)

    def keep(self, z: np.ndarray) -> np.ndarray:
        """MORS's filter on a set's own `quantile` of each objective."""
        return keep(z, np.quantile(z, self.params.quantile, axis=0))


def score_range(m: int, draws: int) -> tuple[np.ndarray, np.ndarray]:
    """lo and hi per objective: the min and max of `draws` N(0, 1) draws (fixed seed)."""
    samples = np.random.default_rng(0).standard_normal((draws, m))
    return samples.min(axis=0), samples.max(axis=0)


def map_preference(w: np.ndarray, low: np.ndarray, high: np.ndarray, mapping: str) -> np.ndarray:
    """The official `map_rewards_from_preference` (np.round: half to even)."""
    w = np.asarray(w, dtype=np.float64)
    span = high - low
    if mapping == "l2":
        return np.round(w / np.sqrt((w**2).sum()) * span + low, 1)
    if mapping == "linear":
        return np.round(w * span + low, 1)
    targets = np.round(np.minimum(len(w) * w, 1) * span + low, 1)  # linf
    best = int(np.argmax(w))
    targets[best] = np.round(high[best], 1)
    return targets


def online_goals(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """MORS's desired scores (n, m): uniform in [lo, hi], then all but the smallest set to hi."""
    low, high = score_range(m, ONLINE_DRAWS)
    goals = rng.uniform(low, high, size=(n, m))
    smallest = goals.argmin(axis=1)
    kept = goals[np.arange(n), smallest]
    goals[:] = high
    goals[np.arange(n), smallest] = kept
    return goals


def keep(z: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """MORS's filter: the rows (n, m) with any z_i at or above its threshold."""
    return (z >= thresholds).any(axis=1)


def z_scores(rewards: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(r - mean) / std per objective, rounded to 0.1, as RiC writes scores into prompts."""
    return np.round((rewards - mean) / np.where(std > 0, std, 1.0), 1)

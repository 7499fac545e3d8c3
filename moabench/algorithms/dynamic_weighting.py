"""Dynamic reward weighting (Lu et al., TACL 2026, arXiv 2509.11452; repo
yining610/dynamic-reward-weighting). Two variants, both as the official trainer runs them.

Gradient-based (the default). The weights move by mirror descent on each objective's influence,
I_j = <g~_j, sum_k g~_k> (the row sums of the Gram matrix H~ of the per-objective gradients g~_j,
each clipped to norm `gradient_clip`, 1.0 in the official code, `actor.grad_clip`):

    w <- softmax(log w + eta_t * I / mu)        (eta_t: the learning rate of the current step)

once per training step, and the step then uses the updated weights:
- online (the paper's setting): the update is ONE policy-gradient step on the scalarised reward
  r = sum_j w_j r_j, with one advantage computed from it; the per-objective gradients (one
  advantage per reward, r_j alone) only serve the influence. The online trainer computes them
  once per step, before its `ppo_epochs` updates (`observe_gram`), then scalarises the rewards
  (`online_reward`). Under GRPO the advantage of sum_j w_j r_j is not sum_j w_j A_j, so this is
  not the same update as combining per-objective losses with coefficients w.
- on analytic problems and preference pairs, where the losses are not built from rewards, the
  direction is sum_j w_j g_j (coefficients a = w), the gradient of sum_j w_j L_j.
mu: the paper uses 1e-5 (1e-4 in some runs) with learning rates around 1e-6, so eta_t / mu = 0.1.
moabench runs at very different learning rates (0.1 on analytic problems, 1e-3 at tiny scale), so the
default `mu=None` keeps the paper's ratio, mu = 10 * eta_t; with clipped gradients the influence is
at most m, so each update moves log w by at most 0.1 m. Pass `mu=1e-5` for the literal value.
Start: uniform weights, as in the paper (`initial_weights="uniform"`), so the preference vector is
ignored; `initial_weights="preference"` starts from w instead.

Hypervolume-guided (`hypervolume_guided=True`, online training only; elsewhere it is a
configuration error). The reward weights are the preference w and stay fixed, as in the official
trainer (`ray_trainer_vanilla.py`); only the step changes. After each update the policy's objective
vector v_t (mean raw rewards, maximised, without the KL penalty) is compared with a buffer B of
earlier ones, delta = HV(B + {v_t}) - HV(B), with the initial model's vector as reference point;
the next step is multiplied by 0.5 + 1.5 tanh(delta), and v_t joins B when delta > 0. The paper
multiplies the reward, which GRPO's advantage normalisation would cancel; scaling the step size is
where the multiplier acts under every estimator (and under Adam). The paper evaluates v_t on a
held-out validation set after the update; moabench uses the next step's samples, which come from
the updated policy and cost nothing (same timing, training prompts instead of held-out ones).

The rule is stateful: one instance per run.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moabench.core.algorithm import GramRule, Paradigm, register_algorithm
from moabench.core.errors import ConfigError


def hypervolume_gain(buffer: list[np.ndarray], point: np.ndarray, reference: np.ndarray) -> float:
    """HV(buffer + {point}) - HV(buffer), maximised objectives, against `reference`."""
    import moocore

    def hv(points: list[np.ndarray]) -> float:
        kept = [p for p in points if np.all(p > reference)]
        return float(moocore.hypervolume(-np.array(kept), ref=-reference)) if kept else 0.0

    return hv([*buffer, point]) - hv(buffer)


def hypervolume_multiplier(delta: float) -> float:
    return 0.5 + 1.5 * float(np.tanh(delta))


def clipped_gram(gram: np.ndarray, max_norm: float | None) -> np.ndarray:
    """The Gram matrix of the gradients g_j * min(1, max_norm / ||g_j||): H~ = S H S."""
    if max_norm is None:
        return gram
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    scale = np.minimum(1.0, max_norm / np.maximum(norms, np.finfo(np.float64).tiny))
    return gram * np.outer(scale, scale)


def mirror_descent_step(
    weights: np.ndarray, gram: np.ndarray, learning_rate: float, mu: float
) -> np.ndarray:
    """w <- softmax(log w + eta * I / mu) with the influence I = H 1."""
    from scipy.special import log_softmax  # on use: registering the algorithms imports no scipy

    influence = gram.sum(axis=1)
    with np.errstate(divide="ignore"):
        logits = np.log(weights) + learning_rate * influence / mu
    return np.exp(log_softmax(logits))


class DynamicWeightingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mu: float | None = Field(
        None, gt=0, description="temperature of the weight update; None: 10 x the learning rate"
    )
    initial_weights: Literal["uniform", "preference"] = Field(
        "uniform",
        description="gradient-based variant: start from uniform weights (paper) or from w",
    )
    gradient_clip: float | None = Field(
        1.0,
        gt=0,
        description="clip each per-objective gradient to this norm before the influence "
        "(official code: 1.0); None: no clipping",
    )
    hypervolume_guided: bool = Field(
        False,
        description="online only: fixed weights w, each step scaled by 0.5 + 1.5 tanh(HV gain)",
    )


@register_algorithm("dynamic-weighting")
class DynamicWeighting(GramRule):
    """Dynamic reward weighting: weights move by mirror descent on each objective's influence."""

    Params = DynamicWeightingParams
    home_paradigm = Paradigm.ONLINE
    standard_variants = ({"hypervolume_guided": True},)  # its own row, online tables only

    def __init__(self, preference: Any, **params: Any) -> None:
        super().__init__(preference, **params)
        m = len(self.preference)
        fixed = self.params.hypervolume_guided  # the weights are w, whatever initial_weights says
        from_preference = fixed or self.params.initial_weights == "preference"
        self.weights = self.preference.copy() if from_preference else np.full(m, 1.0 / m)
        #: online: the trainer hands this rule the per-objective Gram matrix once per step
        self.observes_gradients = not fixed
        self.needs_gram = not fixed
        self.reference_point: np.ndarray | None = None
        self.buffer: list[np.ndarray] = []
        self.multiplier = 1.0

    @classmethod
    def check_paradigm(cls, params: BaseModel, paradigm: Paradigm) -> None:
        if params.hypervolume_guided and paradigm != Paradigm.ONLINE:
            raise ConfigError(
                "algorithm 'dynamic-weighting': hypervolume_guided=true applies to online "
                "training only (its multiplier follows the rewards of the policy's samples); "
                f"this run is {paradigm.value} training"
            )

    def observe_gram(self, gram: np.ndarray, learning_rate: float) -> None:
        """One mirror-descent step of the weights on the clipped gradients' influence."""
        if not self.params.hypervolume_guided and learning_rate > 0:
            mu = self.params.mu if self.params.mu is not None else 10 * learning_rate
            gram = clipped_gram(gram, self.params.gradient_clip)
            self.weights = mirror_descent_step(self.weights, gram, learning_rate, mu)

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        """Analytic problems and preference pairs: move the weights, then a = w."""
        self.observe_gram(gram, learning_rate)
        return self.weights.copy()

    def online_reward(self, rewards: np.ndarray) -> np.ndarray:
        """Online: one reward sum_j w_j r_j with the current weights (official trainer)."""
        return rewards @ self.weights[:, None]

    def weight_trajectory_point(self) -> list[float]:
        return self.weights.tolist()

    def observe_rewards(self, mean_rewards: np.ndarray) -> None:
        if not self.params.hypervolume_guided:
            return
        point = np.asarray(mean_rewards, dtype=np.float64)
        if self.reference_point is None:
            self.reference_point = point
            return
        delta = hypervolume_gain(self.buffer, point, self.reference_point)
        self.multiplier = hypervolume_multiplier(delta)
        if delta > 0:
            self.buffer.append(point)

    def step_size_multiplier(self) -> float:
        return self.multiplier

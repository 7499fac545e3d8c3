"""Gradient-based dynamic reward weighting (Lu et al., TACL 2026, arXiv 2509.11452).

The weights move by mirror descent on each objective's influence, I_j = <g_j, sum_k g_k> (the
row sums of H): w <- softmax(log w + eta_t * I / mu), eta_t the learning rate of the current step.
The step uses the updated weights, a = w.

mu: the paper uses 1e-5 (1e-4 in some runs) with learning rates around 1e-6, so eta_t / mu = 0.1.
moabench runs at very different learning rates (0.1 on analytic problems, 1e-3 at tiny scale), where
mu = 1e-5 would make the weights jump to one objective at every step; the default `mu=None` keeps
the paper's ratio, mu = 10 * eta_t. Pass `mu=1e-5` for the paper's literal value.

Hypervolume-guided variant (`hypervolume_guided=True`, online training): after each step, the
mean rewards v_t of the step's samples (raw units, maximised) are compared with a buffer B of
earlier ones, delta = HV(B + {v_t}) - HV(B) with the first step's vector (the initial model) as
reference point; the next step's learning rate is multiplied by 0.5 + 1.5 tanh(delta), and v_t
joins B when delta > 0. The paper scales the reward, which GRPO's advantage normalisation would
cancel; scaling the step size is where the multiplier acts under every estimator (and under Adam).
The paper validates on a held-out set; moabench uses the step's own samples, which costs nothing.

Start: uniform weights, as in the paper (`initial_weights="uniform"`, default), so the preference
vector is ignored; `initial_weights="preference"` starts from w instead. The rule is stateful:
one instance per run.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import log_softmax

from moabench.core.algorithm import GramRule, Paradigm, register_algorithm


def hypervolume_gain(buffer: list[np.ndarray], point: np.ndarray, reference: np.ndarray) -> float:
    """HV(buffer + {point}) - HV(buffer), maximised objectives, against `reference`."""
    import moocore

    def hv(points: list[np.ndarray]) -> float:
        kept = [p for p in points if np.all(p > reference)]
        return float(moocore.hypervolume(-np.array(kept), ref=-reference)) if kept else 0.0

    return hv([*buffer, point]) - hv(buffer)


def hypervolume_multiplier(delta: float) -> float:
    return 0.5 + 1.5 * float(np.tanh(delta))


def mirror_descent_step(
    weights: np.ndarray, gram: np.ndarray, learning_rate: float, mu: float
) -> np.ndarray:
    """w <- softmax(log w + eta * I / mu) with the influence I = H 1."""
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
        "uniform", description="start from uniform weights (paper) or from the preference"
    )
    hypervolume_guided: bool = Field(
        False, description="online: scale each step by 0.5 + 1.5 tanh(hypervolume gain)"
    )


@register_algorithm("dynamic-weighting")
class DynamicWeighting(GramRule):
    """Dynamic reward weighting: weights move by mirror descent on each objective's influence."""

    Params = DynamicWeightingParams
    home_paradigm = Paradigm.ONLINE

    def __init__(self, preference: Any, **params: Any) -> None:
        super().__init__(preference, **params)
        m = len(self.preference)
        self.weights = (
            np.full(m, 1.0 / m)
            if self.params.initial_weights == "uniform"
            else self.preference.copy()
        )
        self.reference_point: np.ndarray | None = None
        self.buffer: list[np.ndarray] = []
        self.multiplier = 1.0

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        mu = self.params.mu if self.params.mu is not None else 10 * learning_rate
        if learning_rate > 0:
            self.weights = mirror_descent_step(self.weights, gram, learning_rate, mu)
        return self.weights.copy()

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

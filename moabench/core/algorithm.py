"""The algorithm interface and its registry.

A gradient-level multi-objective algorithm is a *combination rule*: from the m x m Gram matrix
H_ij = <g_i, g_j> of the per-objective gradients, the preference vector w and its own state, it
returns coefficients a in R^m; the update direction is sum_i a_i g_i. The same rule object serves
analytic problems, DPO losses and policy-gradient losses (see `moabench.core.gradients.combine`).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from moabench.core.errors import ConfigError, validate_params
from moabench.core.preferences import validate_preference
from moabench.core.registry import Registrable, Registry


class Paradigm(str, Enum):
    """The training settings an algorithm can run in."""

    ANALYTIC = "analytic"
    PREFERENCE = "preference"
    ONLINE = "online"


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Algorithm(Registrable):
    """Base class of every registered algorithm.

    Subclasses set `paradigms`, a pydantic `Params` model (hyperparameters with defaults; unknown
    fields are rejected) and a docstring whose first line is the one-line description.
    """

    paradigms: ClassVar[frozenset[Paradigm]]
    #: The setting of the algorithm's paper: on a task that offers several paradigms (the language
    #: tasks run on preference pairs or online), a run without an explicit one uses this.
    home_paradigm: ClassVar[Paradigm | None] = None
    Params: ClassVar[type[BaseModel]] = NoParams
    #: Online training: the trainer computes the per-objective gradients' Gram matrix once per
    #: step, before the update, and hands it to `observe_gram` (dynamic reward weighting).
    observes_gradients: bool = False
    #: Online training: the advantage estimator the algorithm is defined on (None: any).
    advantage_estimator: ClassVar[str | None] = None
    #: Parameter sets that the standard suite also runs, each as a leaderboard row of its own,
    #: where a sweep gives the algorithm no parameters (and the variant pairs with the paradigm).
    standard_variants: ClassVar[tuple[dict[str, Any], ...]] = ()

    def __init__(self, preference: Any, **params: Any) -> None:
        self.params = validate_params(self.Params, params, f"algorithm {self.name!r}")
        self.preference = validate_preference(preference)

    @classmethod
    def supports(cls, paradigm: Paradigm) -> bool:
        return paradigm in cls.paradigms

    @classmethod
    def check_paradigm(cls, params: BaseModel, paradigm: Paradigm) -> None:
        """Raise `ConfigError` when a parameter value has no effect in `paradigm` training."""

    @classmethod
    def check_task_params(cls, task_params: BaseModel) -> None:
        """Raise `ConfigError` when the task's parameters contradict the algorithm's definition."""
        used = getattr(task_params, "advantage", None)
        if cls.advantage_estimator is not None and used not in (None, cls.advantage_estimator):
            raise ConfigError(
                f"algorithm {cls.name!r} is defined on {cls.advantage_estimator} advantages, not "
                f"{used}: leave the task parameter advantage at {cls.advantage_estimator!r}"
            )

    def weight_trajectory_point(self) -> list[float] | None:
        """The algorithm's current internal weights, for those whose weights move; else None."""
        return None

    def observe_rewards(self, mean_rewards: np.ndarray) -> None:
        """Online training: the mean raw reward per objective (maximised, no KL penalty) of each
        step's samples, before the step's update (so after the previous one)."""

    def observe_gram(self, gram: np.ndarray, learning_rate: float) -> None:
        """Online training, when `observes_gradients`: the Gram matrix of the per-objective
        policy gradients at the start of the step and the step's learning rate."""

    def online_reward(self, rewards: np.ndarray) -> np.ndarray | None:
        """Online training: rewards (n, m) -> scalarised rewards (n, 1) for algorithms that
        combine rewards before the advantage estimator (MORLHF's sum-then-normalise); else None."""
        return None

    def step_size_multiplier(self) -> float:
        """Online training: a factor on the next step's learning rate (1 unless overridden)."""
        return 1.0

    def begin_step(self) -> None:
        """Language training: called at the start of every step, before its samples and
        losses (a preference-conditioned training draws the step's preference here)."""

    def rollout_advantage(self, advantages):  # noqa: ANN001, ANN201 - torch tensors
        """Online training: the whole rollout's (m, N) per-objective advantages, gathered over
        the processes and before any micro-batch split -> one (1, N) advantage, for rules whose
        statistics are the rollout's (GDPO); else None."""
        return None


class GramRule(Algorithm):
    """A combination rule a = rule(H, w, state); see the module docstring."""

    paradigms: ClassVar[frozenset[Paradigm]] = frozenset(Paradigm)
    #: False for rules that only need the weighted loss sum (one backward pass, no Gram matrix).
    needs_gram: ClassVar[bool] = True

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        """Per-objective coefficients from the Gram matrix (float64, shape (m, m)).

        `learning_rate` is the step size of the update about to be taken; only stateful rules whose
        paper ties their own update to it (dynamic reward weighting) use it.
        """
        raise NotImplementedError


class PreferenceLoss(Algorithm):
    """A loss-level algorithm for preference data: it changes the loss, then takes a plain step.

    `loss` receives, for a batch of pairs (y_a, y_b): `margins` = beta * (log pi/pi_ref (y_a) -
    log pi/pi_ref (y_b)), shape (batch,); `signs` (m, batch), +1 where objective i prefers y_a, -1
    where it prefers y_b, 0 for a tie; `reward_differences` (m, batch), r_i(y_a) - r_i(y_b) from
    the task's margin reward models.
    """

    paradigms: ClassVar[frozenset[Paradigm]] = frozenset({Paradigm.PREFERENCE})

    def loss(self, margins, signs, reward_differences):  # noqa: ANN001, ANN201 - torch tensors
        raise NotImplementedError


class AdvantageRule(Algorithm):
    """An online algorithm that combines the per-objective advantages into one, per token (e.g.
    PAMA), then takes a plain policy-gradient step: `combine_advantages` maps (m, n, T) advantages
    (with the (n, T) importance ratios and the (n, T) mask of the response tokens) to (n, T)."""

    paradigms: ClassVar[frozenset[Paradigm]] = frozenset({Paradigm.ONLINE})
    home_paradigm: ClassVar[Paradigm | None] = Paradigm.ONLINE

    def combine_advantages(self, advantages, ratios, mask):  # noqa: ANN001, ANN201 - tensors
        raise NotImplementedError


class SteerableMethod(Algorithm):
    """An algorithm that trains once and answers any preference.

    A per-preference algorithm trains one policy for each preference point of a front. A steerable
    method's policy for w comes from a *shared training* that does not depend on w, and
    `combines` names how w acts on it:
    - "parameters" (Rewarded Soups) or "log_probs" (MOD): the shared training is the m
      **experts**, runs of `expert_algorithm` at the simplex vertices e_1..e_m (same task,
      paradigm, seed and task parameters), and `combine` mixes their parameters or their
      per-token log-probabilities with the weights w;
    - "conditioning": one training of a policy that reads w (`training_rule` draws a preference
      per step and conditions the policy on it), then conditioned on w to answer it;
    - "reward_conditioning" (Rewards-in-Context): one supervised training of a policy that reads
      target scores, then conditioned on the scores w maps to (`targets`).
    The runner (`moabench.runs.runner`) trains or reuses the shared training and hands it to the
    task's `steer`; a record per preference points to it and carries its cost.
    """

    paradigms: ClassVar[frozenset[Paradigm]] = frozenset({Paradigm.PREFERENCE, Paradigm.ONLINE})
    #: the per-preference algorithm whose runs at the simplex vertices are the experts
    expert_algorithm: ClassVar[str] = "ls"
    #: "parameters": theta_w = sum_i w_i theta_i; "log_probs": decode from sum_i w_i log pi_i;
    #: "conditioning": one preference-conditioned policy, conditioned on w; "reward_conditioning":
    #: one reward-conditioned policy, conditioned on `targets()`
    combines: ClassVar[str]

    @classmethod
    def trains_experts(cls) -> bool:
        """Whether the shared training is the m experts (else one conditioned training)."""
        return cls.combines in ("parameters", "log_probs")

    def targets(self) -> np.ndarray:
        """"reward_conditioning": the target scores for the preference."""
        raise NotImplementedError

    def training_rule(self, condition, m: int, seed: int) -> GramRule:  # noqa: ANN001
        """"conditioning": the rule that trains the conditioned policy; it calls `condition(w)`
        with each step's preference before the step's samples and losses."""
        raise NotImplementedError

    def combine(self, values):  # noqa: ANN001, ANN201 - torch tensors
        """sum_i w_i values[i], for m tensors of one shape (the experts' parameters or log-probs)."""
        total = float(self.preference[0]) * values[0]
        for weight, value in zip(self.preference[1:], values[1:]):
            total = total + float(weight) * value
        return total


def simplex_vertices(m: int) -> list[list[float]]:
    """The preferences e_1..e_m, where the experts of a `SteerableMethod` are trained."""
    return [[1.0 if j == i else 0.0 for j in range(m)] for i in range(m)]


algorithms: Registry[Algorithm] = Registry(
    "algorithm", builtin_module="moabench.algorithms", entry_point_group="moabench.algorithms"
)
register_algorithm = algorithms.register


def make_algorithm(name: str, preference: Any, **params: Any) -> Algorithm:
    """Instantiate a registered algorithm by name, e.g. `make_algorithm("gapo", [0.5, 0.5], p=2)`."""
    return algorithms.get(name)(preference, **params)

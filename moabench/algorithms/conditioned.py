"""A preference-conditioned policy: one training, a steerable version of any combination rule.

Panacea (Zhong et al. 2024, arXiv 2402.02030) and the Conditional Language Policy (Wang et al.
2024, arXiv 2407.15762) train one policy that reads the preference: each batch draws w from the
simplex (Panacea, Sec. 4: "for each data batch, we randomly sample a preference vector"), feeds
it to the model, and takes the step of the per-objective losses combined at that w (Panacea's
linear scalarisation sum_i w_i L_i, Eq. 5; its Tchebycheff variant would be another rule). Here
the combination is any registered `GramRule` (`rule`, with `rule_params`), so conditioned LS and
conditioned UPGrad are both one parameter away, and w is drawn from Dirichlet(1) (uniform on the
simplex), never from the evaluation grid, so that the grid is not what it learns.

How the model reads w: `moabench.language.conditioning.Conditioning`, a learned,
zero-initialised linear map of w added to every input embedding, so training starts at the
reference policy, whose log-probabilities stay w-free; at the Hugging Face scales it is a soft
prompt trained with the LoRA adapters (not the text prefix a prompt-conditioned policy reads). Panacea's
SVD-LoRA, which writes w into singular values, is not implemented. The rule is rebuilt at each
step's w, so a rule's internal state (dynamic weighting's moving weights) does not carry over
between steps: it belongs to one preference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from moabench.core.algorithm import (
    GramRule,
    Paradigm,
    SteerableMethod,
    algorithms,
    register_algorithm,
)
from moabench.core.errors import ConfigError, validate_params

#: the seed offset of the preference draws, so that they never share a stream with the run's own
PREFERENCE_STREAM = 8_191


class ConditionedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: str = Field("ls", description="the registered combination rule applied at each step's w")
    rule_params: dict[str, Any] = Field(default_factory=dict, description="the rule's parameters")


@register_algorithm("conditioned")
class PreferenceConditioned(SteerableMethod):
    """One preference-conditioned policy trained with w drawn per step, any rule (steerable)."""

    Params = ConditionedParams
    home_paradigm: ClassVar[Paradigm | None] = Paradigm.PREFERENCE
    combines: ClassVar[str] = "conditioning"

    @classmethod
    def check_paradigm(cls, params: BaseModel, paradigm: Paradigm) -> None:
        rule = algorithms.get(params.rule)
        if not issubclass(rule, GramRule) or issubclass(rule, SteerableMethod):
            usable = [a.name for a in algorithms if issubclass(a, GramRule)]
            raise ConfigError(
                f"algorithm 'conditioned': rule {params.rule!r} is not a combination rule; "
                f"rules: {', '.join(usable)}"
            )
        if not rule.supports(paradigm):
            raise ConfigError(f"rule {params.rule!r} does not run in {paradigm.value} training")
        validated = validate_params(rule.Params, params.rule_params, f"rule {params.rule!r}")
        rule.check_paradigm(validated, paradigm)

    def training_rule(self, condition: Callable[[np.ndarray], None], m: int, seed: int) -> GramRule:
        rule = algorithms.get(self.params.rule)
        return ConditionedTraining(rule, self.params.rule_params, condition, m, seed)


class ConditionedTraining(GramRule):
    """`rule` at a preference drawn from Dirichlet(1) at every step, which `condition` feeds to
    the policy first; every hook is the rule's at that step's preference."""

    def __init__(
        self,
        rule: type[GramRule],
        rule_params: dict[str, Any],
        condition: Callable[[np.ndarray], None],
        m: int,
        seed: int,
    ) -> None:
        self.rule, self.rule_params, self.condition = rule, rule_params, condition
        self.needs_gram = rule.needs_gram
        self.observes_gradients = rule.observes_gradients
        self.draws = np.random.default_rng([seed, PREFERENCE_STREAM])
        self.m = m
        self.preference = np.full(m, 1.0 / m)  # until the first step draws one
        self.params = validate_params(rule.Params, rule_params, f"rule {rule.name!r}")

    @property
    def name(self) -> str:  # the messages of the trainers name the rule
        return self.rule.name

    def begin_step(self) -> None:
        preference = self.draws.dirichlet(np.ones(self.m))
        self.current = self.rule(preference, **self.rule_params)
        self.preference = self.current.preference
        self.condition(self.preference)

    def coefficients(self, gram: np.ndarray, learning_rate: float = 0.0) -> np.ndarray:
        return self.current.coefficients(gram, learning_rate)

    def online_reward(self, rewards: np.ndarray) -> np.ndarray | None:
        return self.current.online_reward(rewards)

    def observe_rewards(self, mean_rewards: np.ndarray) -> None:
        self.current.observe_rewards(mean_rewards)

    def observe_gram(self, gram: np.ndarray, learning_rate: float) -> None:
        self.current.observe_gram(gram, learning_rate)

    def step_size_multiplier(self) -> float:
        return self.current.step_size_multiplier()

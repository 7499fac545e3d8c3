"""`LanguageTask`: the one class a language task subclasses.

A task author writes the objectives and the hooks; the scales and the trainers do the rest:
- `tiny_space`: the objectives (names, senses, ideal and nadir of the hidden rules' scores);
- the tiny scale's hooks: `vocabulary()`, `sample_prompts(generator, n)`,
  `demonstrations(rng, n)` (for the reference policy's supervised fine-tune) and
  `rewards(prompts, responses)` (the hidden rules, shape (n, m));
- `paper_setups`: optional `PaperSetup`s (`moabench.language.setups`) for the Hugging Face scales;
- `Params`: optional extra task parameters, a subclass of `LanguageParams`.

`run` builds the problem of the configured scale (`moabench.language.tiny` or
`moabench.language.hub`) and hands it to the trainer of the configured paradigm
(`moabench.language.preference` or `moabench.language.online`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic.fields import FieldInfo

from moabench.core.algorithm import Algorithm, Paradigm, SteerableMethod
from moabench.core.errors import ConfigError, validate_params
from moabench.core.task import ObjectiveSpace, RunOutput, Task
from moabench.language.params import (
    ALL_GROUPS,
    LanguageParams,
    applies_to,
    params_model,
)
from moabench.language.setups import PaperSetup, TinyModelConfig

if TYPE_CHECKING:
    from moabench.language.hub import HubPieces


class LanguageTask(Task):
    """Base of the language tasks. Subclasses define `tiny_space` and the tiny scale's hooks below
    and may declare `paper_setups` for the Hugging Face scales."""

    paradigms: ClassVar[tuple[Paradigm, ...]] = (Paradigm.PREFERENCE, Paradigm.ONLINE)
    Params: ClassVar[type[LanguageParams]] = LanguageParams
    model_config: ClassVar[TinyModelConfig] = TinyModelConfig()
    max_response_tokens: ClassVar[int] = 8
    paper_setups: ClassVar[Mapping[str, PaperSetup]] = {}

    def __init__(self, **params: Any) -> None:
        where = f"task {self.name!r}"
        chosen = validate_params(
            self.Params, {k: params[k] for k in ("paradigm", "scale") if k in params}, where
        )
        if chosen.paradigm is not None and Paradigm(chosen.paradigm) not in self.paradigms:
            offered = ", ".join(x.value for x in self.paradigms)
            raise ConfigError(f"{where} has no {chosen.paradigm} paradigm (it offers: {offered})")
        paradigm = Paradigm(chosen.paradigm) if chosen.paradigm else self.paradigms[0]
        setup = self.paper_setups.get(chosen.scale)
        if chosen.scale != "tiny" and setup is None:
            known = ", ".join(["tiny", *self.paper_setups])
            raise ConfigError(f"{where} has no scale {chosen.scale!r} (its scales: {known})")
        model = params_model(self.Params, chosen.scale, paradigm)
        elsewhere = [n for n in params if n not in model.model_fields and applies_to(n)]
        if elsewhere:
            raise ConfigError(
                f"{where}: parameter(s) {', '.join(elsewhere)} do not apply to {paradigm.value} "
                f"training at scale {chosen.scale!r} ("
                + "; ".join(f"{n}: {applies_to(n)} only" for n in elsewhere)
                + ")"
            )
        defaults = {
            k: v for k, v in (setup.defaults if setup else {}).items() if k in model.model_fields
        }
        self.params = validate_params(model, {**defaults, **params}, where)
        self._measured_space: ObjectiveSpace | None = None
        self._skipped_rows: dict[str, dict[str, int]] = {}

    @classmethod
    def parameters(cls) -> dict[str, FieldInfo]:
        """Every language parameter, whichever scale and paradigm it applies to."""
        return {
            **cls.Params.model_fields,
            **{n: f for group in ALL_GROUPS for n, f in group.model_fields.items()},
        }

    @classmethod
    def migrated_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Records written before the parameters were split by scale and paradigm held every
        language parameter; those that do not apply to the record's run (at their defaults,
        which was all the old check allowed) are dropped."""
        paradigm = Paradigm(params.get("paradigm") or cls.paradigms[0])
        applying = params_model(cls.Params, params.get("scale", "tiny"), paradigm).model_fields
        return {k: v for k, v in params.items() if k in applying}

    @property
    def tiny_space(self) -> ObjectiveSpace:
        raise NotImplementedError

    @property
    def space(self) -> ObjectiveSpace:
        """At tiny scale the task's fixed space; at the Hugging Face scales the one measured from
        the reference policy when a run starts (before that, a unit placeholder on the same
        objectives: only their number and names are meaningful)."""
        if self.params.scale == "tiny":
            return self.tiny_space
        if self._measured_space is not None:
            return self._measured_space
        m = len(self.tiny_space.names)
        return ObjectiveSpace(self.tiny_space.names, (True,) * m, (1.0,) * m, (0.0,) * m)

    @property
    def space_is_fixed(self) -> bool:
        return self.params.scale == "tiny"

    @property
    def skipped_rows(self) -> dict[str, dict[str, int]]:
        """At the Hugging Face scales, the dataset rows skipped for a known quirk (`hub`)."""
        return self._skipped_rows

    # --- the tiny scale's hooks -------------------------------------------------------------------
    def vocabulary(self) -> list[str]:
        raise NotImplementedError

    def sample_prompts(self, generator: np.random.Generator, n: int) -> list[str]:
        raise NotImplementedError

    def demonstrations(self, rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
        """(prompts, responses) for the reference policy's supervised fine-tune."""
        raise NotImplementedError

    def rewards(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """The hidden rule-based scores, shape (n, m), in the objective space's raw units."""
        raise NotImplementedError

    # --- running ----------------------------------------------------------------------------------
    def hub_pieces(self) -> HubPieces:
        """The Hugging Face scale's policy, data and scorers for this configuration."""
        from moabench.language import hub

        def measured(space: ObjectiveSpace) -> None:
            self._measured_space = space

        setup = self.paper_setups[self.params.scale]
        pieces = hub.load_pieces(setup, self.params, self.tiny_space.names, measured)
        self._skipped_rows = pieces.skipped_rows
        return pieces

    def run(self, algorithm: Algorithm, seed: int) -> RunOutput:
        return self._train(seed, lambda policy: algorithm)

    def train_steerable(self, method: SteerableMethod, seed: int) -> RunOutput:
        from moabench.language.conditioning import Conditioning

        if method.combines == "reward_conditioning":  # Rewards-in-Context
            from moabench.language.ric import train_ric

            return train_ric(self, method, seed)
        m = self.space.n_objectives

        def conditioned_rule(policy: Any) -> Algorithm:
            return method.training_rule(Conditioning(policy, m).set, m, seed)

        return self._train(seed, conditioned_rule)

    def _train(self, seed: int, algorithm_for: Callable[[Any], Algorithm]) -> RunOutput:
        """Build the problem of the configured scale and train its policy with the algorithm
        that `algorithm_for(policy)` returns, in the configured paradigm."""
        from moabench.language import hub, tiny  # torch: imported by runs, not by registration
        from moabench.language.online import train_online
        from moabench.language.preference import train_preference

        params, m, tiny_scale = self.params, self.space.n_objectives, self.params.scale == "tiny"
        if self.paradigm == Paradigm.ONLINE:
            problem = (
                tiny.online_problem(self)
                if tiny_scale
                else hub.online_problem(self.hub_pieces(), params, self.tiny_space.names, self.name)
            )
            output = train_online(problem, algorithm_for(problem.policy), seed, params, m)
        else:
            problem = (
                tiny.preference_problem(self)
                if tiny_scale
                else hub.preference_problem(self.hub_pieces(), params, self.name)
            )
            output = train_preference(problem, algorithm_for(problem.policy), seed, params, m)
        output.policy = problem.policy
        return output

    # --- steerable methods: policies are kept with `save_pretrained` (LoRA: the adapters) ---------
    def save_policy(self, policy: Any, path: Path) -> None:
        policy.save_pretrained(path)
        conditioning = getattr(policy, "conditioning", None)
        if conditioning is not None:
            conditioning.save(path)

    def load_policy(self, path: Path) -> Any:
        """The tiny scale's policy; at the Hugging Face scales its folder, which `steer` loads
        onto the base policy (loaded once for every expert)."""
        if self.params.scale != "tiny":
            return Path(path)
        from moabench.language.conditioning import Conditioning
        from moabench.language.tiny import load_model

        model = load_model(path)
        Conditioning.load(model, path)
        return model

    def steer(self, method: SteerableMethod, experts: list[Any]) -> RunOutput:
        from moabench.language.steering import steer, steer_hub

        return (steer if self.params.scale == "tiny" else steer_hub)(self, method, experts)

"""moabench's algorithms inside trl's trainers: `MultiObjectiveDPOTrainer` subclasses
`trl.DPOTrainer` and `MultiObjectiveGRPOTrainer` subclasses `trl.GRPOTrainer`. Both take any
registered algorithm by name (`rule="mgda"`, with its `preference` and `rule_params`) and keep
the rest of trl's training (accelerate, PEFT, generation, logging, checkpoints).

DPO. The training set is trl's (prompt, chosen, rejected) in the standard (text) format, with
one sign column per objective: moabench's `signed` pair format (`moabench.language.pairs`), +1
where the objective prefers `chosen`, -1 where it prefers `rejected`, 0 for a tie; a row with a
known quirk (an empty text, identical responses) is an error, since trl trains on every row. With
several processes and `precompute_ref_log_probs`, trl caches the reference log-probabilities next
to the dataset, which must then be on disk (`load_from_disk`, `load_dataset`). Each batch
gives the margins beta * [(log pi - log pi_ref)(chosen) - (log pi - log pi_ref)(rejected)] and
from them the m per-objective DPO losses of moabench's own trainer (`per_objective_dpo_losses`):
- a `GramRule` (ls, mgda, upgrad, cagrad, raco, gapo, dynamic-weighting, ...) turns the Gram
  matrix of the m losses' gradients into coefficients a, and trl backpropagates sum_i a_i L_i
  as it backpropagates its own loss;
- a `PreferenceLoss` (modpo) replaces the m losses by one, from the margins, the signs and the
  margin rewards r_i(chosen) - r_i(rejected) (one column per objective, `margin_columns`).

GRPO. One reward function per objective, in the preference's order. Each generation batch's
rewards (n, m) take the path of moabench's online trainer (`moabench.language.online`): the
algorithm observes their mean (and, if it `observes_gradients`, the Gram matrix of the
per-objective losses, computed in the micro-batches trl trains on), then
- a rule that scalarises the rewards (`online_reward`: ls's default MORLHF order,
  dynamic-weighting) gets the advantage of the scalarised reward, and trl's loss as it is;
- a rule whose advantage is the whole batch's (`rollout_advantage`: gdpo) gets that advantage,
  from the m advantages of the gathered rewards, and trl's loss as it is (gdpo's equals trl's own
  `multi_objective_aggregation="normalize_then_sum"`);
- otherwise every objective gets its own advantage A_i (`moabench.language.advantages`; GRPO's
  group normalisation by default): an `AdvantageRule` (pama) combines them per token into one
  advantage for trl's loss, and a `GramRule` combines the m losses L_i = trl's loss with
  advantage A_i (the m losses share one forward pass) as for DPO.
trl's `reward_weights` become the preference (for trl's own logged reward); setting them is an
error. A rule's `step_size_multiplier` scales the optimizer's step, as moabench's trainer does.

With one process and no gradient accumulation a step (coefficients, parameters) is the step of
moabench's own trainers on the same batch (tests/test_trl_integration.py). With gradient
accumulation every micro-batch's coefficients come from its own Gram matrix (moabench's trainers
accumulate the per-objective gradients over the micro-batches first). On several processes the
per-objective gradients are averaged over the processes before the Gram matrix, so the rule sees
the global batch's (two CPU processes take one process's step, in the tests). Why the
benchmark's own runs keep moabench's trainers: ARCHITECTURE.md, design decisions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal, get_args

import numpy as np
import torch
from transformers import TrainerCallback
from trl import DPOTrainer, GRPOTrainer
from trl.trainer.utils import global_then_local_main_first, split_tensor_dict

from moabench.core.algorithm import (
    AdvantageRule,
    Algorithm,
    GramRule,
    Paradigm,
    PreferenceLoss,
    SteerableMethod,
    algorithms,
)
from moabench.core.errors import ConfigError
from moabench.core.gradients import (
    check_finite_losses,
    loss_gram,
    rule_coefficients,
)
from moabench.core.preferences import validate_preference
from moabench.language.advantages import Estimator
from moabench.language.advantages import advantages as estimate_advantages
from moabench.language.lm import last_block_parameters
from moabench.language.pairs import read_signed, require_columns
from moabench.language.preference import per_objective_dpo_losses
from moabench.language.training import checked_scores

#: Columns the trainers add to a batch: each pair's m signs and margin rewards (DPO), each
#: completion's m advantages (GRPO); shape (batch, m).
SIGNS = "objective_signs"
MARGIN_REWARDS = "objective_margin_rewards"
ADVANTAGES = "objective_advantages"

GramParameters = Literal["all", "last-block"]


def make_rule(
    name: str, preference: np.ndarray, params: dict[str, Any] | None, paradigm: Paradigm
) -> Algorithm:
    """The registered algorithm `name`, or a `ConfigError` naming those that run in `paradigm`
    (an unknown name is an `UnknownNameError` listing the known ones)."""

    def runs(cls: type[Algorithm]) -> bool:
        if paradigm == Paradigm.PREFERENCE:
            return cls.supports(paradigm) and issubclass(cls, GramRule | PreferenceLoss)
        return cls.supports(paradigm) and not issubclass(cls, SteerableMethod)

    cls = algorithms.get(name)
    if not runs(cls):
        usable = [other.name for other in algorithms if runs(other)]
        raise ConfigError(
            f"algorithm {name!r} ({cls.description()}) does not run in {paradigm.value} "
            f"training; this trainer takes: {', '.join(usable)}"
        )
    algorithm = cls(preference, **(params or {}))
    cls.check_paradigm(algorithm.params, paradigm)
    return algorithm


class _RuleTrainer:
    """What both trainers add to trl's: the algorithm and its coefficients. A step's coefficients
    are appended to `step_coefficients` and logged as `objectives/<name>/coefficient`."""

    algorithm: Algorithm
    objective_names: list[str]
    gram_parameters: GramParameters
    step_coefficients: list[np.ndarray]

    def _gram(
        self, model: torch.nn.Module, micro_batch_losses: Sequence[Callable[[], torch.Tensor]]
    ) -> np.ndarray:
        """The Gram matrix of the gradients of the losses that are the mean of the micro-batches'
        (each callable computes one's), their Jacobian averaged over the processes
        (`moabench.core.gradients.loss_gram`; accelerate's processes are torch's process group)."""
        parameters = (
            last_block_parameters(model)
            if self.gram_parameters == "last-block"
            else [p for p in model.parameters() if p.requires_grad]
        )
        return loss_gram(micro_batch_losses, parameters)

    def _coefficients(self, model: torch.nn.Module, losses: torch.Tensor) -> np.ndarray:
        rule, learning_rate = self.algorithm, self._get_learning_rate()
        if not rule.needs_gram:
            return rule.coefficients(np.empty((0, 0)), learning_rate)
        return rule_coefficients(self._gram(model, [lambda: losses]), rule, learning_rate)

    def _combined_loss(self, model: torch.nn.Module, losses: torch.Tensor) -> torch.Tensor:
        """sum_i a_i L_i: a from the rule in training, the preference in evaluation."""
        check_finite_losses(losses)
        training = model.training and torch.is_grad_enabled()
        if training:
            coefficients = self._coefficients(model, losses)
            self.step_coefficients.append(coefficients)
        else:
            coefficients = self.algorithm.preference
        metrics = self._metrics["train" if training else "eval"]
        for name, loss, a in zip(self.objective_names, losses.tolist(), coefficients):
            metrics[f"objectives/{name}/loss"].append(loss)
            metrics[f"objectives/{name}/coefficient"].append(float(a))
        return losses @ torch.as_tensor(coefficients, dtype=losses.dtype, device=losses.device)


@dataclass
class ObjectiveColumns:
    """trl's collator, plus the per-objective columns of the examples as (batch, m) tensors."""

    collate: Callable[[list[dict[str, Any]]], dict[str, Any]]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collate(examples)
        for column in (SIGNS, MARGIN_REWARDS):
            if column in examples[0]:
                batch[column] = torch.tensor([e[column] for e in examples], dtype=torch.float32)
        return batch


def with_objective_columns(
    dataset: Any, objectives: Sequence[str], margin_columns: Sequence[str] | None, source: str
) -> Any:
    """`dataset` (prompt, chosen, rejected, one sign column per objective) with the columns
    `SIGNS` and, from `margin_columns`, `MARGIN_REWARDS` added; rows checked as pairs.py does."""
    from datasets import Dataset

    if not isinstance(dataset, Dataset):
        raise ConfigError(f"{source}: a datasets.Dataset is needed, got {type(dataset).__name__}")
    text = ["prompt", "chosen", "rejected"]
    require_columns(
        dataset.column_names, [*text, *objectives, *(margin_columns or [])], source, "signed"
    )
    rows = enumerate(dataset.select_columns([*text, *objectives]), start=1)
    try:  # strict: trl trains on every row, so a row with a known quirk cannot be skipped here
        pairs, _ = read_signed(rows, objectives, source, {o: o for o in objectives}, strict=True)
    except ConfigError as error:
        message, quirk, _ = str(error).partition(" (strict=true")
        hint = "; trl trains on every row: leave such rows out of the dataset" if quirk else ""
        raise ConfigError(message + hint) from None
    columns = {SIGNS: pairs.signs.T.tolist()}
    if margin_columns:
        rows = dataset.select_columns(list(margin_columns))
        margins = checked_scores(
            [[row[c] for c in margin_columns] for row in rows],
            margin_columns,
            f"{source}: margin columns",
        )
        columns[MARGIN_REWARDS] = margins.tolist()
    with global_then_local_main_first():  # a map, as trl's own: one process writes the cache
        return dataset.map(
            lambda _, i: {name: values[i] for name, values in columns.items()},
            with_indices=True,
            desc=f"Adding the objectives' columns to {source}",
        )


class MultiObjectiveDPOTrainer(_RuleTrainer, DPOTrainer):
    """trl's `DPOTrainer` with one DPO loss per objective, combined by a moabench algorithm.

    `objectives`: the sign columns of the training set, one per objective, in the preference's
    order. `margin_columns`: r_i(chosen) - r_i(rejected) per objective, for preference losses
    (modpo). `gram_parameters="last-block"`: the Gram matrix from the last transformer block's
    gradients (GAPO's variant). Every other argument is `DPOTrainer`'s; its `args` keep DPO's
    sigmoid loss on the reverse-KL margins (`loss_type`, `f_divergence_type`, `ld_alpha` and
    `use_weighting` at their defaults).
    """

    def __init__(
        self,
        model: Any,
        *,
        rule: str,
        preference: Sequence[float],
        objectives: Sequence[str],
        rule_params: dict[str, Any] | None = None,
        margin_columns: Sequence[str] | None = None,
        gram_parameters: GramParameters = "all",
        train_dataset: Any = None,
        eval_dataset: Any = None,
        args: Any = None,
        **kwargs: Any,
    ) -> None:
        self.objective_names = list(objectives)
        m = len(self.objective_names)
        self.algorithm = make_rule(
            rule, validate_preference(preference, m), rule_params, Paradigm.PREFERENCE
        )
        self.gram_parameters = _checked_gram_parameters(gram_parameters)
        self.step_coefficients = []
        refuse_sharded_parameters(args)
        needs_margins = isinstance(self.algorithm, PreferenceLoss)
        if needs_margins and margin_columns is None:
            raise ConfigError(
                f"algorithm {rule!r} needs the margin rewards of the pairs: pass margin_columns, "
                "one column per objective holding r_i(chosen) - r_i(rejected)"
            )
        if margin_columns is not None:
            if not needs_margins:
                raise ConfigError(
                    f"margin_columns serve preference losses (modpo); algorithm {rule!r} "
                    "combines the per-objective losses and does not use them"
                )
            if len(margin_columns) != m:
                raise ConfigError(
                    f"margin_columns has {len(margin_columns)} columns for {m} objectives"
                )
        if args is not None:
            _check_dpo_args(args)

        def prepared(dataset: Any, source: str) -> Any:
            if isinstance(dataset, dict):
                return {k: prepared(v, f"{source}[{k!r}]") for k, v in dataset.items()}
            return with_objective_columns(dataset, self.objective_names, margin_columns, source)

        super().__init__(
            model,
            args=args,
            train_dataset=prepared(train_dataset, "train_dataset"),
            eval_dataset=None if eval_dataset is None else prepared(eval_dataset, "eval_dataset"),
            **kwargs,
        )
        if self.aux_loss_enabled:
            raise ConfigError(
                "MultiObjectiveDPOTrainer: a mixture-of-experts auxiliary loss is not combined "
                "with the per-objective losses; set router_aux_loss_coef=0"
            )
        self.data_collator = ObjectiveColumns(self.data_collator)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if SIGNS not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, SIGNS, MARGIN_REWARDS]

    def _compute_loss(self, model, inputs, return_outputs):
        margins = self._margins(model, inputs)
        signs = inputs[SIGNS].T.to(margins.dtype)
        if isinstance(self.algorithm, PreferenceLoss):
            loss = self.algorithm.loss(margins, signs, inputs[MARGIN_REWARDS].T)
            check_finite_losses(loss.reshape(1))
        else:
            loss = self._combined_loss(model, per_objective_dpo_losses(margins, signs))
        mode = "train" if model.training else "eval"
        self._metrics[mode]["rewards/margins"].append(margins.detach().mean().item())
        if return_outputs:  # evaluation's logits (trl recomputes them too: the fused head has none)
            with torch.no_grad():
                outputs = model(
                    input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
                )
            return loss, outputs
        return loss

    def _margins(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """beta * [(log pi - log pi_ref)(chosen) - (log pi - log pi_ref)(rejected)] per pair,
        log pi summed over the completion's tokens as trl's DPO loss sums them."""
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels,
            use_cache=False, fused_lm_head=True,
        )  # fmt: skip
        log_probs = outputs.log_probs[:, -(completion_mask.shape[1] - 1) :].sum(dim=1)
        if self.precompute_ref_logps:
            reference = torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]])
        else:
            reference_model = self.ref_model if self.ref_model is not None else self.model
            reference = torch.cat(self.compute_ref_log_probs(reference_model, inputs))
        chosen, rejected = (log_probs - reference).chunk(2)
        return self.beta * (chosen - rejected)


def refuse_sharded_parameters(args: Any) -> None:
    """A `ConfigError` for ZeRO-3 or FSDP (in the trainer's `args` or accelerate's config): they
    shard the parameters between the processes, so a process's per-objective gradients would be
    its shard's, and the Gram matrix a wrong one without any error from torch."""
    deepspeed = getattr(args, "deepspeed", None)
    if isinstance(deepspeed, str) and os.path.isfile(deepspeed):
        with open(deepspeed) as handle:
            deepspeed = json.load(handle)
    stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    if isinstance(deepspeed, dict):
        stage = deepspeed.get("zero_optimization", {}).get("stage", stage)
    fsdp = bool(getattr(args, "fsdp", None)) or os.environ.get(
        "ACCELERATE_USE_FSDP", ""
    ).lower() in ("1", "true")
    if fsdp or str(stage) == "3":
        raise ConfigError(
            f"{'FSDP' if fsdp else 'DeepSpeed ZeRO-3'} shards the parameters between the "
            "processes, and the Gram matrix needs each objective's gradient w.r.t. whole "
            "parameters; use plain data parallelism (DDP) or ZeRO-1/2"
        )


def _check_dpo_args(args: Any) -> None:
    defaults = {
        "loss_type": ["sigmoid"],
        "f_divergence_type": "reverse_kl",
        "ld_alpha": None,
        "use_weighting": False,
    }
    changed = [
        f"{name}={getattr(args, name)!r}"
        for name, default in defaults.items()
        if getattr(args, name) != default and str(getattr(args, name)) != str(default)
    ]
    if changed:
        raise ConfigError(
            f"MultiObjectiveDPOTrainer: {', '.join(changed)} is not supported; the per-objective "
            "losses are DPO's sigmoid loss on the reverse-KL margins, so leave these at their "
            "defaults"
        )


def _checked_gram_parameters(value: str) -> GramParameters:
    if value not in get_args(GramParameters):
        raise ConfigError(
            f"gram_parameters must be one of {', '.join(get_args(GramParameters))}, got {value!r}"
        )
    return value  # type: ignore[return-value]


class StepSize(TrainerCallback):
    """Multiplies the learning rate of each optimizer step by the algorithm's
    `step_size_multiplier` (dynamic-weighting's hypervolume guidance), whatever the schedule."""

    def __init__(self, algorithm: Algorithm) -> None:
        self.algorithm = algorithm
        self.multiplier = 1.0

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.multiplier = self.algorithm.step_size_multiplier()
        for group in optimizer.param_groups:
            group["lr"] *= self.multiplier

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        for group in optimizer.param_groups:
            group["lr"] /= self.multiplier


class MultiObjectiveGRPOTrainer(_RuleTrainer, GRPOTrainer):
    """trl's `GRPOTrainer` with one advantage per reward function, combined by a moabench
    algorithm.

    `reward_funcs`: one per objective, in the preference's order (their names name the
    objectives in the logs). `advantage`: moabench's per-objective estimator (grpo, rloo,
    reinforce). `gram_parameters` as for `MultiObjectiveDPOTrainer`. Every other argument is
    `GRPOTrainer`'s, without `reward_weights` (the preference takes their place).
    """

    def __init__(
        self,
        model: Any,
        reward_funcs: Any,
        *,
        rule: str,
        preference: Sequence[float],
        rule_params: dict[str, Any] | None = None,
        advantage: Estimator = "grpo",
        gram_parameters: GramParameters = "all",
        args: Any = None,
        **kwargs: Any,
    ) -> None:
        reward_funcs = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
        self.algorithm = make_rule(
            rule, validate_preference(preference, len(reward_funcs)), rule_params, Paradigm.ONLINE
        )
        if advantage not in get_args(Estimator):
            raise ConfigError(
                f"advantage must be one of {', '.join(get_args(Estimator))}, got {advantage!r}"
            )
        type(self.algorithm).check_task_params(SimpleNamespace(advantage=advantage))
        self.advantage = advantage
        refuse_sharded_parameters(args)
        self.gram_parameters = _checked_gram_parameters(gram_parameters)
        self.step_coefficients = []
        self._shared_forward_output: list[Any] | None = None
        if args is not None and args.reward_weights is not None:
            raise ConfigError(
                "MultiObjectiveGRPOTrainer: the rule's preference weighs the reward functions; "
                "leave reward_weights unset"
            )
        super().__init__(model, reward_funcs, args=args, **kwargs)
        self.objective_names = list(self.reward_func_names)
        self.reward_weights = torch.as_tensor(self.algorithm.preference, dtype=torch.float32)
        self.add_callback(StepSize(self.algorithm))

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        self._objective_rewards = super()._calculate_rewards(
            inputs, prompts, completions, completion_ids_list
        )
        return self._objective_rewards

    def _generate_and_score_completions(self, inputs):
        batch = super()._generate_and_score_completions(inputs)
        if not self.model.training:  # evaluation: trl's loss on the preference-weighted rewards
            return batch
        rewards = checked_scores(
            self._objective_rewards.cpu().numpy(), self.objective_names, "the reward functions"
        )
        self.algorithm.observe_rewards(rewards.mean(axis=0))
        n = len(batch["completion_ids"])
        local = slice(self.accelerator.process_index * n, (self.accelerator.process_index + 1) * n)

        def estimated(values: np.ndarray) -> torch.Tensor:
            """(N, k) rewards -> (k, N) advantages, the global batch's."""
            grouped = values.reshape(-1, self.num_generations, values.shape[1])
            advantage = estimate_advantages(grouped, self.advantage).reshape(len(values), -1)
            return torch.as_tensor(advantage.T, dtype=torch.float32)

        def local_advantages(values: torch.Tensor) -> torch.Tensor:
            """(k, N) -> this process's (n, k)."""
            return values.T[local].to(self.accelerator.device)

        batch[ADVANTAGES] = local_advantages(estimated(rewards))
        if self.algorithm.observes_gradients:  # the weights move on this step's gradients
            gram = self._gram(self.model, self._step_losses(batch))
            self.algorithm.observe_gram(gram, self._get_learning_rate())
        scalarised = self.algorithm.online_reward(rewards)
        whole_batch = self.algorithm.rollout_advantage(estimated(rewards))  # GDPO
        one = estimated(scalarised) if scalarised is not None else whole_batch
        if one is not None:
            batch["advantages"] = local_advantages(one)[:, 0]
            del batch[ADVANTAGES]
        return batch

    def _compute_loss(self, model, inputs):
        if ADVANTAGES not in inputs:  # one advantage (scalarised rewards, or evaluation)
            return super()._compute_loss(model, inputs)
        if isinstance(self.algorithm, AdvantageRule):
            with self._shared_forward():
                log_probs = self._log_probs(model, inputs)
                old = inputs.get("old_per_token_logps")
                ratio = torch.ones_like(log_probs) if old is None else torch.exp(log_probs - old)
                mask = inputs["completion_mask"] * inputs.get("tool_mask", 1)
                advantages = inputs[ADVANTAGES].T[:, :, None].expand(-1, -1, ratio.shape[1])
                combined = self.algorithm.combine_advantages(advantages, ratio.detach(), mask)
                return super()._compute_loss(model, {**inputs, "advantages": combined})
        return self._combined_loss(model, self._objective_losses(model, inputs))

    def _step_losses(self, batch: dict[str, Any]) -> list[Callable[[], torch.Tensor]]:
        """The m per-objective losses of the steps a generation batch trains, as trl trains them:
        in its `steps_per_generation` micro-batches (`split_tensor_dict`), one forward pass and
        graph each (the whole batch in one graph would hold every row's activations at once).
        Their sum, K x their mean (what `loss_gram` takes), is the losses of the accumulated step
        (with trl's default steps_per_generation = gradient_accumulation_steps)."""
        parts = split_tensor_dict(batch, self.args.steps_per_generation)
        return [
            lambda part=part: len(parts) * self._objective_losses(self.model, part)
            for part in parts
        ]

    def _objective_losses(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """L_i: trl's loss with the advantages of objective i, one forward pass for all m."""
        losses = []
        with self._shared_forward():
            for advantage in inputs[ADVANTAGES].T:
                losses.append(super()._compute_loss(model, {**inputs, "advantages": advantage}))
        return torch.stack(losses)

    def _log_probs(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """The policy's per-token log-probabilities of the completions, as trl's loss has them."""
        completion_ids = inputs["completion_ids"]
        log_probs, _, _ = self._get_per_token_logps_and_entropies(
            model,
            torch.cat([inputs["prompt_ids"], completion_ids], dim=1),
            torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1),
            completion_ids.size(1),
            compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled,
        )
        return log_probs

    @contextmanager
    def _shared_forward(self) -> Iterator[None]:
        """Within: the policy's forward pass runs once, and later calls reuse its output."""
        self._shared_forward_output = []
        try:
            yield
        finally:
            self._shared_forward_output = None

    def _get_per_token_logps_and_entropies(self, model, *args, **kwargs):
        shared = self._shared_forward_output
        if shared is None:
            return super()._get_per_token_logps_and_entropies(model, *args, **kwargs)
        if not shared:
            shared.append(super()._get_per_token_logps_and_entropies(model, *args, **kwargs))
        return shared[0]

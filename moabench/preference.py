"""Preference-data tasks and their trainer: per-objective DPO losses combined by the algorithm.

A `LanguageTask` (tiny scale) supplies a vocabulary, prompts, demonstrations for the reference
policy's supervised fine-tune, and hidden rule-based rewards. The trainer never sees the rules:
it learns from preference pairs sampled from the reference policy and labelled per objective with
Bradley-Terry noise. Each step computes one DPO loss per objective on a shared batch of pairs,

    L_i = -mean log sigmoid(s_i * beta * [(log pi - log pi_ref)(y_a) - (log pi - log pi_ref)(y_b)])

with s_i = +1 when objective i prefers y_a, -1 when it prefers y_b, 0 for a tie (zero gradient),
and hands the m losses to `moabench.gradients.combine`, so every combination rule runs unchanged.
Loss-level algorithms (`PreferenceLoss`, e.g. MODPO) get the margins, labels and the hidden
rules' reward differences (their margin reward models at tiny scale) and return one loss.
Evaluation samples on held-out prompts with a fixed seed and scores each objective with its rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from moabench import hub, paper_scale
from moabench.algorithm import Algorithm, GramRule, Paradigm, PreferenceLoss
from moabench.errors import ConfigError
from moabench.gradients import check_finite_losses, combine_micro_batches
from moabench.lm import Batch, make_batch, select_rows, sequence_log_probs
from moabench.pairs import PreferencePairs
from moabench.paper_scale import PaperSetup
from moabench.task import DivergedError, ObjectiveSpace, RunOutput, Task, TaskParams
from moabench.tiny_lm import (
    TinyModelConfig,
    build_tokenizer,
    generate_responses,
    reference_policy,
)

#: Seeds of the task's fixed data: training prompts and pair labels, and held-out evaluation.
EVALUATION_SEED = 1234
EVALUATIONS_ALONG_TRAINING = 4


SCALE_ONLY_PARAMS = (
    "policy", "dataset", "reward_models", "lora_rank", "max_length", "max_new_tokens",
    "device", "lm_eval_tasks", "lm_eval_include_path", "lm_eval_limit",
)  # fmt: skip


PREFERENCE_ONLY_PARAMS = ("beta", "label_noise")
ONLINE_ONLY_PARAMS = (
    "group_size", "prompts_per_step", "advantage", "ppo_epochs", "clip_epsilon", "kl_coef",
    "kl_in_reward", "temperature",
)  # fmt: skip


class LanguageParams(TaskParams):
    paradigm: Literal["preference", "online"] | None = Field(
        None, description="DPO on preference pairs, or online RL; None: the algorithm's own"
    )
    scale: Literal["tiny", "small", "paper"] = Field(
        "tiny", description="tiny: embedded, offline, CPU; small/paper: Hugging Face models"
    )
    steps: int = Field(80, ge=1, description="optimizer steps")
    batch_size: int = Field(32, ge=1, description="preference pairs per step")
    learning_rate: float = Field(1e-3, gt=0, description="optimizer step size")
    optimizer: Literal["adam", "sgd"] = Field(
        "adam", description="adam, or plain SGD (which keeps the rule's direction exactly)"
    )
    beta: float = Field(0.1, gt=0, description="DPO inverse temperature")
    n_pairs: int = Field(512, ge=2, description="training preference pairs")
    n_eval_prompts: int = Field(128, ge=1, description="held-out prompts scored at evaluation")
    label_noise: float = Field(
        0.1,
        gt=0,
        description="tiny: Bradley-Terry temperature, P(a > b) = sigmoid((r_a - r_b) / noise)",
    )
    data_seed: int = Field(0, description="seed of the prompts, pair labels and data shuffling")
    # online only
    group_size: int = Field(4, ge=1, description="online: responses sampled per prompt (k)")
    prompts_per_step: int = Field(8, ge=1, description="online: prompts per step")
    advantage: Literal["grpo", "rloo", "reinforce"] = Field(
        "grpo", description="online: per-objective advantage estimator"
    )
    ppo_epochs: int = Field(
        1, ge=1, description="online: updates per batch; above 1, PPO's clipped surrogate acts"
    )
    clip_epsilon: float = Field(0.2, gt=0, description="online: PPO clip range")
    kl_coef: float = Field(0.05, ge=0, description="online: weight of the KL to the reference")
    kl_in_reward: bool = Field(
        False,
        description="online: subtract the KL from the rewards instead of adding it to the loss",
    )
    temperature: float = Field(1.0, ge=0, description="online: sampling temperature")
    gram_parameters: Literal["all", "last-block"] = Field(
        "all", description="parameters whose gradients form the Gram matrix (GAPO: last-block)"
    )
    micro_batch_size: int | None = Field(
        None, ge=1, description="gradient accumulation micro-batch (None: the whole batch)"
    )
    # small / paper scale only
    policy: str | None = Field(None, description="small/paper: causal LM, Hub id or local path")
    dataset: str | None = Field(None, description="small/paper: Hub id, local copy or pair file")
    reward_models: dict[str, str] = Field(
        default_factory=dict, description="small/paper: {objective: Hub id or local path}"
    )
    lora_rank: int = Field(16, ge=0, description="small/paper: LoRA rank (0: full fine-tune)")
    max_length: int = Field(512, ge=8, description="small/paper: tokens per prompt + response")
    max_new_tokens: int = Field(
        128, ge=1, description="small/paper: tokens generated at evaluation"
    )
    device: str | None = Field(
        None, description="small/paper: torch device (None: cuda if available)"
    )
    lm_eval_tasks: list[str] = Field(
        default_factory=list, description="small/paper: lm-eval tasks run on the trained policy"
    )
    lm_eval_include_path: str | None = Field(None, description="small/paper: custom lm-eval tasks")
    lm_eval_limit: int | None = Field(
        None, ge=1, description="small/paper: lm-eval examples per task"
    )

    @model_validator(mode="after")
    def _micro_batches_divide_the_batch(self) -> LanguageParams:
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"micro_batch_size {self.micro_batch_size} must divide batch_size {self.batch_size}"
            )
        return self


def per_objective_dpo_losses(margins: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """L_i = -mean_k log sigmoid(s_ik * margin_k): margins (batch,), signs (m, batch) -> (m,)."""
    return -F.logsigmoid(signs * margins.unsqueeze(0)).mean(dim=1)


def bradley_terry_signs(
    rewards_a: np.ndarray, rewards_b: np.ndarray, noise: float, generator: np.random.Generator
) -> np.ndarray:
    """Per-objective labels (m, n): +1 (a preferred) with probability sigmoid((r_a - r_b)/noise),
    else -1; exact ties are 0."""
    difference = (rewards_a - rewards_b).T
    prefer_a = generator.random(difference.shape) < 1 / (1 + np.exp(-difference / noise))
    return np.where(difference == 0, 0.0, np.where(prefer_a, 1.0, -1.0))


@dataclass
class PaperPieces:
    """What both trainers take from a Hugging Face setup (`LanguageTask.paper_pieces`)."""

    policy: torch.nn.Module
    tokenizer: Any
    device: str
    data: PreferencePairs | None  # training pairs (None for a "problems" dataset)
    training_prompts: list[str]  # online training prompts: the pairs' or the problems'
    scores: Callable[[list[str], list[str], bool], np.ndarray]  # (prompts, responses, evaluation)
    formatted: Callable[[list[str]], list[str]]  # raw prompts -> what the policy reads
    sample: Callable[[torch.nn.Module, list[str], int], list[str]]  # (model, prompts, seed)
    evaluate: Callable[[torch.nn.Module], list[float]]
    capabilities: Callable[[torch.nn.Module], dict[str, float]]  # lm-eval on the trained policy


@dataclass
class PreferenceProblem:
    """What the trainer needs, at any scale: a policy, its pairs and an evaluation."""

    policy: torch.nn.Module
    pairs: Batch  # 2n rows: prompt + response a, then prompt + response b
    signs: torch.Tensor  # (m, n)
    #: r_i(y_a) - r_i(y_b) per objective (m, n), for margin-based losses (MODPO); computed on demand
    reward_differences: Callable[[], torch.Tensor]
    evaluate: Callable[[torch.nn.Module], list[float]]
    gram_subset: Callable[[torch.nn.Module], list[torch.Tensor]] | None = None
    device: str = "cpu"
    #: cut each batch to its longest row (the tiny scale keeps its fixed width, so that its
    #: recorded results do not move)
    trim_padding: bool = True
    capabilities: Callable[[torch.nn.Module], dict[str, float]] | None = None


class LanguageTask(Task):
    """Base of the preference-data tasks. Subclasses define the tiny scale's hooks below and may
    declare `paper_setups` for the Hugging Face scales."""

    paradigms: ClassVar[tuple[Paradigm, ...]] = (Paradigm.PREFERENCE, Paradigm.ONLINE)
    Params: ClassVar[type[TaskParams]] = LanguageParams
    model_config: ClassVar[TinyModelConfig] = TinyModelConfig()
    max_response_tokens: ClassVar[int] = 8
    paper_setups: ClassVar[Mapping[str, PaperSetup]] = {}

    def __init__(self, **params: Any) -> None:
        setup = self.paper_setups.get(params.get("scale"))  # type: ignore[arg-type]
        super().__init__(**({**setup.defaults, **params} if setup else params))
        p, name = self.params, self.name
        if p.paradigm is not None and Paradigm(p.paradigm) not in self.paradigms:
            offered = ", ".join(x.value for x in self.paradigms)
            raise ConfigError(f"task {name!r} has no {p.paradigm} paradigm (it offers: {offered})")
        online = self.paradigm == Paradigm.ONLINE
        for names, applies in (
            (SCALE_ONLY_PARAMS, p.scale != "tiny"),
            (PREFERENCE_ONLY_PARAMS, not online),
            (("n_pairs",), not online or p.scale != "tiny"),  # paper scale: the prompts' pairs
            (ONLINE_ONLY_PARAMS, online),
        ):
            wrong = self._changed(names, setup.defaults if setup else {}) if not applies else []
            if wrong:
                raise ConfigError(
                    f"task {name!r}: parameter(s) {', '.join(wrong)} do not apply to "
                    f"{self.paradigm.value} training at scale {p.scale!r}"
                )
        if p.scale != "tiny" and setup is None:
            known = ", ".join(["tiny", *self.paper_setups])
            raise ConfigError(f"task {name!r} has no scale {p.scale!r} (its scales: {known})")
        if online and p.group_size < 2 and p.advantage in ("grpo", "rloo"):
            raise ConfigError(
                f"task {name!r}: the {p.advantage} advantage compares the responses to one prompt, "
                f"so group_size must be at least 2 (got {p.group_size}); use advantage=reinforce "
                "for one response per prompt"
            )
        if online and p.temperature == 0 and p.group_size > 1:
            raise ConfigError(
                f"task {name!r}: temperature 0 is greedy decoding, which gives the same response "
                f"{p.group_size} times per prompt; use a temperature above 0 or group_size=1"
            )
        self._measured_space: ObjectiveSpace | None = None

    def _changed(self, names: tuple[str, ...], scale_defaults: Mapping[str, Any]) -> list[str]:
        """Those of `names` whose values differ from their defaults at this scale."""
        fields = type(self.params).model_fields
        return [
            n
            for n in names
            if getattr(self.params, n)
            != scale_defaults.get(n, fields[n].get_default(call_default_factory=True))
        ]

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

    # --- tiny-scale hooks -------------------------------------------------------------------------
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

    # --- tiny pipeline ----------------------------------------------------------------------------
    def tokenizer(self):
        return build_tokenizer(self.vocabulary())

    def reference(self, tokenizer):
        return reference_policy(self.name, tokenizer, self.model_config, self.demonstrations)

    def preference_data(self, reference, tokenizer) -> tuple[PreferencePairs, torch.Tensor]:
        """Pairs sampled from the reference policy, labelled per objective with BT noise, and
        the hidden rules' reward differences r_i(y_a) - r_i(y_b), shape (m, n)."""
        generator = np.random.default_rng(self.params.data_seed)
        prompts = self.sample_prompts(generator, self.params.n_pairs)
        seed = self.params.data_seed
        responses_a = generate_responses(
            reference, tokenizer, prompts, self.max_response_tokens, seed
        )
        responses_b = generate_responses(
            reference, tokenizer, prompts, self.max_response_tokens, seed + 1
        )
        rewards_a = self.rewards(prompts, responses_a)
        rewards_b = self.rewards(prompts, responses_b)
        signs = bradley_terry_signs(rewards_a, rewards_b, self.params.label_noise, generator)
        pairs = PreferencePairs(
            prompts, responses_a, responses_b, torch.as_tensor(signs, dtype=torch.float32)
        )
        return pairs, torch.as_tensor((rewards_a - rewards_b).T, dtype=torch.float32)

    def evaluation_prompts(self) -> list[str]:
        return self.sample_prompts(
            np.random.default_rng(EVALUATION_SEED), self.params.n_eval_prompts
        )

    def evaluate_policy(self, policy, tokenizer, prompts: list[str]) -> list[float]:
        """Mean hidden score per objective of responses sampled with a fixed seed."""
        policy.eval()
        responses = generate_responses(
            policy, tokenizer, prompts, self.max_response_tokens, EVALUATION_SEED
        )
        policy.train()
        return self.rewards(prompts, responses).mean(axis=0).tolist()

    def tiny_problem(self) -> PreferenceProblem:
        tokenizer = self.tokenizer()
        policy = self.reference(tokenizer)
        data, differences = self.preference_data(policy, tokenizer)
        eval_prompts = self.evaluation_prompts()
        return PreferenceProblem(
            policy=policy,
            pairs=make_batch(tokenizer, data.prompts * 2, data.responses_a + data.responses_b),
            signs=data.signs,
            reward_differences=lambda: differences,
            evaluate=lambda model: self.evaluate_policy(model, tokenizer, eval_prompts),
            trim_padding=False,
        )

    # --- small / paper pipeline -------------------------------------------------------------------
    def paper_pieces(self) -> PaperPieces:
        """The Hugging Face scales' policy (with LoRA), pairs, held-out prompts and scorers."""
        params, setup = self.params, self.paper_setups[self.params.scale]
        names = self.tiny_space.names
        device = params.device or ("cuda" if torch.cuda.is_available() else "cpu")
        answers: dict[str, str] = {}
        if setup.dataset_format == "problems":
            problems = paper_scale.read_problems(setup, params)
            answers = dict(zip(problems.prompts, problems.answers))
            data = None
            training_prompts, eval_prompts = paper_scale.hold_out_problems(
                problems, params.n_eval_prompts
            )
        else:
            data, eval_prompts = paper_scale.hold_out(
                paper_scale.read_pairs(setup, params, names), params.n_eval_prompts, params.n_pairs
            )
            training_prompts = list(dict.fromkeys(data.prompts))
        base, tokenizer = hub.load_causal_lm(params.policy or setup.policy)
        policy = hub.with_lora(base, params.lora_rank).to(device)
        scorers = paper_scale.scorer_functions(setup, params, names, tokenizer, device, answers)

        def scores(prompts: list[str], responses: list[str], evaluation: bool) -> np.ndarray:
            return np.stack([score(prompts, responses, evaluation) for score in scorers], axis=1)

        def formatted(prompts: list[str]) -> list[str]:
            return paper_scale.format_prompts(tokenizer, prompts, setup.prompt_template)

        def sample(model, prompts: list[str], seed: int) -> list[str]:
            return paper_scale.generate_text(
                model, tokenizer, formatted(prompts), params.max_new_tokens, seed,
                params.batch_size, device,
            )  # fmt: skip

        def evaluate(model) -> list[float]:
            model.eval()
            responses = sample(model, eval_prompts, EVALUATION_SEED)
            per_response = scores(eval_prompts, responses, evaluation=True)
            model.train()
            if self._measured_space is None:  # the first evaluation is the reference policy's
                self._measured_space = paper_scale.reference_space(names, per_response)
            return per_response.mean(axis=0).tolist()

        def capabilities(model) -> dict[str, float]:
            if not params.lm_eval_tasks:
                return {}
            from moabench.capabilities import capability_scores

            return capability_scores(
                model, tokenizer, params.lm_eval_tasks, params.lm_eval_include_path,
                params.lm_eval_limit, params.batch_size,
            )  # fmt: skip

        return PaperPieces(
            policy, tokenizer, device, data, training_prompts, scores, formatted, sample, evaluate,
            capabilities,
        )  # fmt: skip

    def paper_problem(self) -> PreferenceProblem:
        pieces, params = self.paper_pieces(), self.params
        data, scores = pieces.data, pieces.scores
        if data is None:
            raise ConfigError(
                f"task {self.name!r}: its dataset holds problems, not preference pairs; "
                "train it online (--task-param paradigm=online)"
            )

        def differences() -> torch.Tensor:
            a = scores(data.prompts, data.responses_a, evaluation=False)
            delta = a - scores(data.prompts, data.responses_b, evaluation=False)
            return torch.as_tensor(delta.T, dtype=torch.float32)

        signs = data.signs
        if torch.isnan(signs).any():  # objectives the dataset does not label: by their scorer
            signs = torch.where(torch.isnan(signs), torch.sign(differences()), signs)
        subset = (
            paper_scale.last_block_parameters if params.gram_parameters == "last-block" else None
        )
        return PreferenceProblem(
            policy=pieces.policy,
            pairs=make_batch(
                pieces.tokenizer,
                pieces.formatted(data.prompts) * 2,
                data.responses_a + data.responses_b,
                params.max_length,
            ),  # fmt: skip
            signs=signs,
            reward_differences=differences,
            evaluate=pieces.evaluate,
            gram_subset=subset,
            device=pieces.device,
            capabilities=pieces.capabilities,
        )

    def run(self, algorithm: Algorithm, seed: int) -> RunOutput:
        if self.paradigm == Paradigm.ONLINE:
            from moabench.online import train_online

            return train_online(self, algorithm, seed)
        problem = self.tiny_problem() if self.params.scale == "tiny" else self.paper_problem()
        if problem.gram_subset is None and self.params.gram_parameters == "last-block":
            problem.gram_subset = paper_scale.last_block_parameters
        return train_preference(problem, algorithm, seed, self.params, self.space.n_objectives)


def train_preference(
    problem: PreferenceProblem, algorithm: Algorithm, seed: int, params: LanguageParams, m: int
) -> RunOutput:
    """DPO training of `problem.policy` on its pairs, the m per-objective losses combined by a
    `GramRule` (through `combine_micro_batches`) or replaced by a `PreferenceLoss`."""
    if not isinstance(algorithm, GramRule | PreferenceLoss):
        raise TypeError(f"{algorithm.name} is neither a combination rule nor a preference loss")
    policy, pairs = problem.policy, problem.pairs
    n = pairs.input_ids.shape[0] // 2
    reference_log_probs = _reference_log_probs(
        policy, pairs, params.micro_batch_size, problem.device
    )
    differences = problem.reward_differences() if isinstance(algorithm, PreferenceLoss) else None
    policy.train()
    parameters = [p for p in policy.parameters() if p.requires_grad]
    gram_parameters = problem.gram_subset(policy) if problem.gram_subset else None
    optimizer = make_optimizer(params, parameters)
    generator = torch.Generator().manual_seed(seed)
    evaluate_every = max(1, params.steps // EVALUATIONS_ALONG_TRAINING)
    output = RunOutput(objectives=[])

    def margins_of(index: torch.Tensor) -> torch.Tensor:
        both = torch.cat([index, index + n])
        batch = select_rows(pairs, both, problem.trim_padding).to(problem.device)
        log_ratios = sequence_log_probs(policy, batch) - reference_log_probs[both]
        return params.beta * (log_ratios[: len(index)] - log_ratios[len(index) :])

    def losses_of(index: torch.Tensor) -> Callable[[], torch.Tensor]:
        if isinstance(algorithm, GramRule):
            return lambda: per_objective_dpo_losses(
                margins_of(index), problem.signs[:, index].to(problem.device)
            )
        return lambda: algorithm.loss(
            margins_of(index),
            problem.signs[:, index].to(problem.device),
            differences[:, index].to(problem.device),
        ).reshape(1)

    for step in range(params.steps):
        if step % evaluate_every == 0:
            output.trajectory.append(problem.evaluate(policy))
            output.trajectory_steps.append(step)
        index = torch.randint(n, (params.batch_size,), generator=generator)
        micro = index.split(params.micro_batch_size or params.batch_size)
        try:
            if isinstance(algorithm, GramRule):
                combine_micro_batches(
                    [losses_of(part) for part in micro],
                    parameters,
                    algorithm,
                    params.learning_rate,
                    gram_parameters,
                )
            else:
                optimizer.zero_grad()
                for part in micro:
                    loss = losses_of(part)()
                    check_finite_losses(loss)
                    (loss / len(micro)).backward()
        except DivergedError as error:
            raise DivergedError(f"step {step}: {error}") from None
        optimizer.step()
        weights = algorithm.weight_trajectory_point()
        if weights is not None and step % evaluate_every == 0:
            output.weight_trajectory.append(weights)

    output.objectives = problem.evaluate(policy)
    if problem.capabilities is not None:
        output.capabilities = problem.capabilities(policy)
    output.trajectory.append(output.objectives)
    output.trajectory_steps.append(params.steps)
    output.steps = params.steps
    needs_gram = isinstance(algorithm, GramRule) and algorithm.needs_gram
    output.gradient_evaluations = params.steps * (m if needs_gram else 1)
    return output


def make_optimizer(params: LanguageParams, parameters: list[torch.Tensor]) -> torch.optim.Optimizer:
    """Adam, or plain SGD: Adam's per-coordinate scaling changes the combined direction, so the
    descent guarantees of MGDA-like rules hold for SGD only."""
    if params.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=params.learning_rate)
    return torch.optim.Adam(parameters, lr=params.learning_rate)


def _reference_log_probs(policy, pairs: Batch, chunk: int | None, device: str) -> torch.Tensor:
    """log pi_ref of every pair's responses: the policy before training, in eval mode (with LoRA
    the adapters start at zero, so no second copy of the model is needed)."""
    policy.eval()
    rows = torch.arange(pairs.input_ids.shape[0])
    with torch.no_grad():
        parts = [
            sequence_log_probs(policy, select_rows(pairs, part).to(device))
            for part in rows.split(chunk or len(rows))
        ]
    return torch.cat(parts)

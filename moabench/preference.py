"""Preference-data tasks and their trainer: per-objective DPO losses combined by the algorithm.

A `PreferenceTask` (tiny scale) supplies a vocabulary, prompts, demonstrations for the reference
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

import copy
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from moabench.algorithm import Algorithm, GramRule, Paradigm, PreferenceLoss
from moabench.gradients import check_finite_losses, combine
from moabench.task import DivergedError, RunOutput, Task, TaskParams
from moabench.tiny_lm import (
    Batch,
    TinyModelConfig,
    build_tokenizer,
    generate_responses,
    make_batch,
    reference_policy,
    sequence_log_probs,
)

#: Seeds of the task's fixed data: training prompts and pair labels, and held-out evaluation.
EVALUATION_SEED = 1234
EVALUATIONS_ALONG_TRAINING = 4


class PreferenceParams(TaskParams):
    scale: Literal["tiny"] = Field("tiny", description="tiny: embedded, offline, CPU")
    steps: int = Field(80, ge=1, description="optimizer steps")
    batch_size: int = Field(32, ge=1, description="preference pairs per step")
    learning_rate: float = Field(1e-3, gt=0, description="Adam step size")
    beta: float = Field(0.1, gt=0, description="DPO inverse temperature")
    n_pairs: int = Field(512, ge=2, description="preference pairs sampled from the reference")
    n_eval_prompts: int = Field(128, ge=1, description="held-out prompts scored at evaluation")
    label_noise: float = Field(
        0.1, gt=0, description="Bradley-Terry temperature: P(a > b) = sigmoid((r_a - r_b) / noise)"
    )
    data_seed: int = Field(0, description="seed of the prompts and pair labels")


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
class PreferenceData:
    prompts: list[str]
    responses_a: list[str]
    responses_b: list[str]
    signs: torch.Tensor  # (m, n_pairs)
    reward_differences: torch.Tensor  # (m, n_pairs): r_i(y_a) - r_i(y_b), for margin-based losses


class PreferenceTask(Task):
    """Base of the tiny-scale preference-data tasks; subclasses define the hooks below."""

    paradigm: ClassVar[Paradigm] = Paradigm.PREFERENCE
    Params: ClassVar[type[TaskParams]] = PreferenceParams
    model_config: ClassVar[TinyModelConfig] = TinyModelConfig()
    max_response_tokens: ClassVar[int] = 8

    # --- hooks -----------------------------------------------------------------------------------
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

    # --- pipeline --------------------------------------------------------------------------------
    def tokenizer(self):
        return build_tokenizer(self.vocabulary())

    def reference(self, tokenizer):
        return reference_policy(self.name, tokenizer, self.model_config, self.demonstrations)

    def preference_data(self, reference, tokenizer) -> PreferenceData:
        """Pairs sampled from the reference policy, labelled per objective with BT noise."""
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
        return PreferenceData(
            prompts,
            responses_a,
            responses_b,
            torch.as_tensor(signs, dtype=torch.float32),
            torch.as_tensor((rewards_a - rewards_b).T, dtype=torch.float32),
        )

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

    def run(self, algorithm: Algorithm, seed: int) -> RunOutput:
        if not isinstance(algorithm, GramRule | PreferenceLoss):
            raise TypeError(f"{algorithm.name} is neither a combination rule nor a preference loss")
        params = self.params
        tokenizer = self.tokenizer()
        reference = self.reference(tokenizer)
        data = self.preference_data(reference, tokenizer)
        pairs = make_batch(tokenizer, data.prompts * 2, data.responses_a + data.responses_b)
        with torch.no_grad():
            reference_log_probs = sequence_log_probs(reference, pairs)
        n = len(data.prompts)

        policy = copy.deepcopy(reference)
        policy.train()
        parameters = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(parameters, lr=params.learning_rate)
        generator = torch.Generator().manual_seed(seed)
        eval_prompts = self.evaluation_prompts()
        evaluate_every = max(1, params.steps // EVALUATIONS_ALONG_TRAINING)
        output = RunOutput(objectives=[])

        for step in range(params.steps):
            if step % evaluate_every == 0:
                output.trajectory.append(self.evaluate_policy(policy, tokenizer, eval_prompts))
                output.trajectory_steps.append(step)
            index = torch.randint(n, (params.batch_size,), generator=generator)
            both = torch.cat([index, index + n])
            log_ratios = sequence_log_probs(policy, _rows(pairs, both)) - reference_log_probs[both]
            margins = params.beta * (log_ratios[: len(index)] - log_ratios[len(index) :])
            optimizer.zero_grad()
            try:
                if isinstance(algorithm, GramRule):
                    losses = per_objective_dpo_losses(margins, data.signs[:, index])
                    combine(losses, parameters, algorithm, params.learning_rate)
                else:
                    signs, differences = data.signs[:, index], data.reward_differences[:, index]
                    loss = algorithm.loss(margins, signs, differences)
                    check_finite_losses(loss.reshape(1))
                    loss.backward()
            except DivergedError as error:
                raise DivergedError(f"step {step}: {error}") from None
            optimizer.step()
            weights = algorithm.weight_trajectory_point()
            if weights is not None and step % evaluate_every == 0:
                output.weight_trajectory.append(weights)

        output.objectives = self.evaluate_policy(policy, tokenizer, eval_prompts)
        output.trajectory.append(output.objectives)
        output.trajectory_steps.append(params.steps)
        output.steps = params.steps
        needs_gram = isinstance(algorithm, GramRule) and algorithm.needs_gram
        per_step = self.space.n_objectives if needs_gram else 1
        output.gradient_evaluations = params.steps * per_step
        return output


def _rows(batch: Batch, index: torch.Tensor) -> Batch:
    return Batch(batch.input_ids[index], batch.attention_mask[index], batch.response_mask[index])

"""Online training of the language tasks: sample, score every objective, per-objective advantages,
and one policy-gradient loss per objective combined by the algorithm.

Each step samples `group_size` responses to each of `prompts_per_step` prompts from the policy,
scores them with the task's rewards (m per response) and turns each objective's rewards into
advantages A_i (`moabench.advantages`). With r_t = pi(y_t) / pi_old(y_t) per response token,

    L_i = -mean_t min(r_t A_i, clip(r_t, 1 - eps, 1 + eps) A_i) + kl_coef * KL_t(pi || pi_ref)

(the clip acts only from the second of `ppo_epochs` updates on a batch; KL_t is the k3 estimator
exp(ref - logp) - (ref - logp) - 1; with `kl_in_reward` the sequence KL is subtracted from the
rewards instead). Then:
- a `GramRule` (ls, mgda, gapo, raco, dynamic-weighting, ...) combines the m losses through
  `moabench.gradients.combine`, exactly as on the analytic problems and the DPO losses;
- an `AdvantageRule` (PAMA) combines the m advantages per token into one, for one loss;
- an algorithm whose `online_reward` scalarises the rewards first (MORLHF's sum-then-normalise
  order) gets one advantage from sum_i w_i r_i, for one loss.
The policy runs without dropout (so the first ratio is exactly 1). Evaluation samples on
held-out prompts with a fixed seed, as in preference training.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from moabench.advantages import advantages as estimate_advantages
from moabench.algorithm import AdvantageRule, Algorithm, GramRule
from moabench.errors import ConfigError
from moabench.gradients import check_finite_losses, combine
from moabench.lm import Batch, make_batch, token_log_probs
from moabench.preference import EVALUATION_SEED, EVALUATIONS_ALONG_TRAINING, make_optimizer
from moabench.task import DivergedError, RunOutput
from moabench.tiny_lm import generate_responses

if TYPE_CHECKING:
    from moabench.preference import LanguageTask  # noqa: F401 - documents the task type


def checked_rewards(task: LanguageTask, prompts: list[str], responses: list[str]) -> np.ndarray:
    """`task.rewards(...)` as float64 (n, m), or a `ConfigError` naming what is wrong with it."""
    return checked_scores(task, task.rewards(prompts, responses), len(responses))


def checked_scores(task: LanguageTask, raw: object, n: int | None = None) -> np.ndarray:
    """Rewards as float64 (n, m), or a `ConfigError` naming what is wrong with them."""
    m = task.space.n_objectives
    where = f"task {task.name!r}: rewards()"
    try:
        rewards = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} returned non-numeric values: {str(raw)[:80]}") from None
    n = len(rewards) if n is None else n
    if rewards.shape != (n, m):
        raise ConfigError(
            f"{where} returned shape {rewards.shape} for {n} responses; expected ({n}, {m}): "
            f"one column per objective ({', '.join(task.space.names)})"
        )
    if not np.all(np.isfinite(rewards)):
        bad = sorted({task.space.names[j] for j in np.argwhere(~np.isfinite(rewards))[:, 1]})
        raise ConfigError(f"{where} returned NaN or infinite rewards for {', '.join(bad)}")
    return rewards


def clipped_surrogate(
    advantage: torch.Tensor, ratio: torch.Tensor, mask: torch.Tensor, epsilon: float
) -> torch.Tensor:
    """-mean over response tokens of min(r A, clip(r) A); advantage and ratio (n, T)."""
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    per_token = torch.minimum(ratio * advantage, clipped * advantage)
    return -(per_token * mask).sum() / mask.sum()


def k3_kl(log_probs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref): exp(d) - d - 1 with d = ref - logp."""
    d = reference - log_probs
    return torch.exp(d) - d - 1


@dataclass
class OnlineProblem:
    """What the online trainer needs, at any scale."""

    policy: torch.nn.Module
    prompts: Callable[[np.random.Generator, int], list[str]]  # training prompts
    sample: Callable[[list[str], int], list[str]]  # (prompts, seed) -> the policy's responses
    batch: Callable[[list[str], list[str]], Batch]  # prompt + response token ids
    reference_log_probs: Callable[[Batch], torch.Tensor]  # per token, under the reference
    rewards: Callable[[list[str], list[str]], np.ndarray]  # checked, (n, m)
    evaluate: Callable[[], list[float]]
    device: str = "cpu"
    capabilities: Callable[[torch.nn.Module], dict[str, float]] | None = None


def tiny_online_problem(task: LanguageTask) -> OnlineProblem:
    tokenizer = task.tokenizer()
    policy = task.reference(tokenizer)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    eval_prompts = task.evaluation_prompts()
    temperature = task.params.temperature

    def sample(prompts: list[str], seed: int) -> list[str]:
        return generate_responses(
            policy, tokenizer, prompts, task.max_response_tokens, seed, temperature
        )

    def evaluate() -> list[float]:
        responses = generate_responses(
            policy, tokenizer, eval_prompts, task.max_response_tokens, EVALUATION_SEED
        )
        return checked_rewards(task, eval_prompts, responses).mean(axis=0).tolist()

    return OnlineProblem(
        policy=policy,
        prompts=task.sample_prompts,
        sample=sample,
        batch=lambda prompts, responses: make_batch(tokenizer, prompts, responses),
        reference_log_probs=lambda batch: token_log_probs(reference, batch),
        rewards=lambda prompts, responses: checked_rewards(task, prompts, responses),
        evaluate=evaluate,
    )


def paper_online_problem(task: LanguageTask) -> OnlineProblem:
    """The Hugging Face scales: prompts of the setup's dataset, rewards from its scorers; with
    LoRA the reference is the policy with its adapters disabled (no second model)."""
    pieces = task.paper_pieces()
    policy, params = pieces.policy, task.params
    training_prompts = pieces.training_prompts
    if hasattr(policy, "disable_adapter"):

        def reference_log_probs(batch: Batch) -> torch.Tensor:
            with policy.disable_adapter():
                return token_log_probs(policy, batch)
    else:
        reference = copy.deepcopy(policy).eval().requires_grad_(False)

        def reference_log_probs(batch: Batch) -> torch.Tensor:
            return token_log_probs(reference, batch)

    def prompts(rng: np.random.Generator, n: int) -> list[str]:
        return [training_prompts[i] for i in rng.integers(len(training_prompts), size=n)]

    def batch(prompts_: list[str], responses: list[str]) -> Batch:
        return make_batch(
            pieces.tokenizer, pieces.formatted(prompts_), responses, params.max_length
        ).to(pieces.device)

    return OnlineProblem(
        policy=policy,
        prompts=prompts,
        sample=lambda prompts_, seed: pieces.sample(policy, prompts_, seed),
        batch=batch,
        reference_log_probs=reference_log_probs,
        rewards=lambda prompts_, responses: checked_scores(
            task, pieces.scores(prompts_, responses, evaluation=False)
        ),
        evaluate=lambda: pieces.evaluate(policy),
        device=pieces.device,
        capabilities=pieces.capabilities,
    )


def train_online(task: LanguageTask, algorithm: Algorithm, seed: int) -> RunOutput:
    params = task.params
    m = task.space.n_objectives
    problem = tiny_online_problem(task) if params.scale == "tiny" else paper_online_problem(task)
    policy = problem.policy
    policy.eval()  # no dropout: the importance ratio starts at exactly 1
    parameters = [p for p in policy.parameters() if p.requires_grad]
    gram_parameters = None
    if params.gram_parameters == "last-block":
        from moabench.paper_scale import last_block_parameters

        gram_parameters = last_block_parameters(policy)
    optimizer = make_optimizer(params, parameters)
    prompt_rng = np.random.default_rng(seed)
    evaluate_every = max(1, params.steps // EVALUATIONS_ALONG_TRAINING)
    output = RunOutput(objectives=[])
    eps = params.clip_epsilon

    for step in range(params.steps):
        if step % evaluate_every == 0:
            output.trajectory.append(problem.evaluate())
            output.trajectory_steps.append(step)
            policy.eval()
            weights = algorithm.weight_trajectory_point()
            if weights is not None:
                output.weight_trajectory.append(weights)
        prompts = [
            p for p in problem.prompts(prompt_rng, params.prompts_per_step)
            for _ in range(params.group_size)
        ]  # fmt: skip
        responses = problem.sample(prompts, seed * 1_000_003 + step)
        rewards = problem.rewards(prompts, responses)
        batch = problem.batch(prompts, responses)
        mask = batch.response_mask[:, 1:].float()
        with torch.no_grad():
            old_log_probs = token_log_probs(policy, batch)
            reference_log_probs = problem.reference_log_probs(batch)
        if params.kl_in_reward:
            sequence_kl = ((old_log_probs - reference_log_probs) * mask).sum(dim=1)
            rewards = rewards - params.kl_coef * sequence_kl.cpu().numpy()[:, None]
        scalarised = algorithm.online_reward(rewards)
        per_objective = scalarised if scalarised is not None else rewards
        grouped = per_objective.reshape(params.prompts_per_step, params.group_size, -1)
        advantage = torch.as_tensor(
            estimate_advantages(grouped, params.advantage).reshape(len(prompts), -1).T,
            dtype=torch.float32,
            device=problem.device,
        )  # (m or 1, n)
        learning_rate = params.learning_rate * algorithm.step_size_multiplier()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        for _ in range(params.ppo_epochs):
            log_probs = token_log_probs(policy, batch)
            ratio = torch.exp(log_probs - old_log_probs)
            kl = 0.0
            if not params.kl_in_reward and params.kl_coef > 0:
                kl = (
                    params.kl_coef
                    * (k3_kl(log_probs, reference_log_probs) * mask).sum()
                    / mask.sum()
                )

            try:
                if isinstance(algorithm, GramRule) and scalarised is None:
                    losses = torch.stack(
                        [clipped_surrogate(a[:, None], ratio, mask, eps) + kl for a in advantage]
                    )
                    combine(losses, parameters, algorithm, learning_rate, gram_parameters)
                else:
                    if isinstance(algorithm, AdvantageRule):
                        token_advantages = advantage[:, :, None].expand(-1, -1, ratio.shape[1])
                        combined = algorithm.combine_advantages(token_advantages, ratio.detach())
                    else:
                        combined = advantage[0][:, None]
                    loss = clipped_surrogate(combined, ratio, mask, eps) + kl
                    check_finite_losses(loss.reshape(1))
                    optimizer.zero_grad()
                    loss.backward()
            except DivergedError as error:
                raise DivergedError(f"step {step}: {error}") from None
            optimizer.step()
        algorithm.observe_rewards(rewards.mean(axis=0))

    output.objectives = problem.evaluate()
    if problem.capabilities is not None:
        output.capabilities = problem.capabilities(policy)
    output.trajectory.append(output.objectives)
    output.trajectory_steps.append(params.steps)
    weights = algorithm.weight_trajectory_point()
    if weights is not None:
        output.weight_trajectory.append(weights)
    output.steps = params.steps
    needs_gram = isinstance(algorithm, GramRule) and algorithm.needs_gram and scalarised is None
    output.gradient_evaluations = params.steps * params.ppo_epochs * (m if needs_gram else 1)
    return output

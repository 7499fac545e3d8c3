"""Online training of the language tasks: sample, score every objective, per-objective advantages,
and one policy-gradient loss per objective combined by the algorithm.

Each step samples `group_size` responses to each of `prompts_per_step` prompts from the policy,
scores them with the task's rewards (m per response) and turns each objective's rewards into
advantages A_i (`moabench.language.advantages`). With r_t = pi(y_t) / pi_old(y_t) per response token,

    L_i = -mean_t min(r_t A_i, clip(r_t, 1 - eps, 1 + eps) A_i) + kl_coef * KL_t(pi || pi_ref)

(the clip acts only from the second of `ppo_epochs` updates on a batch; KL_t is the k3 estimator
exp(ref - logp) - (ref - logp) - 1; with `kl_in_reward` the sequence KL is subtracted from the
rewards instead). Then:
- a `GramRule` (mgda, gapo, raco, upgrad, ...) combines the m losses through
  `moabench.core.gradients.combine`, exactly as on the analytic problems and the DPO losses;
- an `AdvantageRule` (PAMA) combines the m advantages per token into one, for one loss;
- an algorithm whose `online_reward` scalarises the rewards first (MORLHF's sum-then-normalise
  order, dynamic reward weighting) gets one advantage from sum_i w_i r_i, for one loss. One that
  `observes_gradients` (dynamic weighting's weight update) first receives the Gram matrix of the
  m per-objective losses' gradients, once per step, before the step's `ppo_epochs` updates.
Each step's raw mean rewards (before any KL penalty) go to `observe_rewards` before its update.
The policy runs without dropout (so the first ratio is exactly 1). Evaluation samples on
held-out prompts with a fixed seed, as in preference training.

Data parallelism (`moabench.core.distributed`): `prompts_per_step` prompts (times `group_size`
responses) are the global batch. Every process draws the same prompts and samples, scores and
trains on its equal share of whole prompt groups; sampling is seeded per step and process (the
seed of a one-process run on process 0 of one). The rewards (and KL penalties) of all processes
are gathered, so advantages, scalarised rewards and `observe_rewards` are the global batch's; each
loss's token mean divides by the global batch's response tokens per process (`Rollout.tokens`),
so the processes' mean loss is the global batch's, and the gradients are averaged over the
processes (`moabench.core.gradients`). PAMA's `level="batch"` (means over the batch's tokens) is
not supported on several processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from moabench.core import distributed
from moabench.core.algorithm import AdvantageRule, Algorithm, GramRule
from moabench.core.errors import ConfigError
from moabench.core.gradients import check_finite_losses, combine_micro_batches, loss_gram
from moabench.core.task import DivergedError, RunOutput
from moabench.language.advantages import advantages as estimate_advantages
from moabench.language.lm import Batch, last_block_parameters, token_log_probs
from moabench.language.params import LanguageParams
from moabench.language.training import EVALUATIONS_ALONG_TRAINING, gram_modules, make_optimizer


def clipped_surrogate(
    advantage: torch.Tensor,
    ratio: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float,
    tokens: torch.Tensor,
) -> torch.Tensor:
    """-sum over response tokens of min(r A, clip(r) A) / `tokens` (the mean over this process's
    response tokens when `tokens` is their number); advantage and ratio (n, T)."""
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    per_token = torch.minimum(ratio * advantage, clipped * advantage)
    return -(per_token * mask).sum() / tokens


def k3_kl(log_probs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref): exp(d) - d - 1 with d = ref - logp."""
    d = reference - log_probs
    return torch.exp(d) - d - 1


@dataclass
class OnlineProblem:
    """What the online trainer needs, at any scale (built by `moabench.language.tiny` or
    `moabench.language.hub`)."""

    policy: torch.nn.Module
    prompts: Callable[[np.random.Generator, int], list[str]]  # training prompts
    sample: Callable[[list[str], int], list[str]]  # (prompts, seed) -> the policy's responses
    batch: Callable[[list[str], list[str]], Batch]  # prompt + response token ids
    reference_log_probs: Callable[[Batch], torch.Tensor]  # per token, under the reference
    rewards: Callable[[list[str], list[str]], np.ndarray]  # checked, (n, m)
    evaluate: Callable[[], list[float]]
    device: str = "cpu"
    capabilities: Callable[[torch.nn.Module], dict[str, float]] | None = None


@dataclass
class Rollout:
    """One step's samples: their tokens, the response mask, and their per-token log-probabilities
    under the policy that sampled them and under the reference."""

    batch: Batch
    mask: torch.Tensor  # (n, T), response tokens
    old_log_probs: torch.Tensor
    reference_log_probs: torch.Tensor
    #: the global batch's response tokens per process (mask.sum() on one process): the
    #: denominator of the losses' token means, so that their mean over processes is the global one
    tokens: torch.Tensor


def group_advantages(rewards: np.ndarray, params: LanguageParams, device: str) -> torch.Tensor:
    """(n, k) rewards, n = prompts_per_step x group_size -> (k, n) advantages, one row per column."""
    grouped = rewards.reshape(params.prompts_per_step, params.group_size, -1)
    advantage = estimate_advantages(grouped, params.advantage).reshape(len(rewards), -1).T
    return torch.as_tensor(advantage, dtype=torch.float32, device=device)


def ratio_and_kl(
    policy: torch.nn.Module, rollout: Rollout, params: LanguageParams
) -> tuple[torch.Tensor, torch.Tensor | float]:
    """Per-token importance ratios pi / pi_old, and the KL loss term (0 with `kl_in_reward`)."""
    log_probs = token_log_probs(policy, rollout.batch)
    ratio = torch.exp(log_probs - rollout.old_log_probs)
    if params.kl_in_reward or params.kl_coef == 0:
        return ratio, 0.0
    kl = k3_kl(log_probs, rollout.reference_log_probs)
    return ratio, params.kl_coef * (kl * rollout.mask).sum() / rollout.tokens


def objective_losses(
    policy: torch.nn.Module, rollout: Rollout, advantage: torch.Tensor, params: LanguageParams
) -> torch.Tensor:
    """One clipped policy-gradient loss (plus the KL term) per row of `advantage`: (m,)."""
    ratio, kl = ratio_and_kl(policy, rollout, params)
    return torch.stack(
        [clipped_surrogate(a[:, None], ratio, rollout.mask, params.clip_epsilon, rollout.tokens)
         + kl for a in advantage]
    )  # fmt: skip


def train_online(
    problem: OnlineProblem, algorithm: Algorithm, seed: int, params: LanguageParams, m: int
) -> RunOutput:
    """Online training of `problem.policy` on `params`' schedule: m per-objective losses combined
    by a `GramRule`, advantages combined by an `AdvantageRule`, or one scalarised reward."""
    groups = distributed.shard(params.prompts_per_step, "prompts_per_step")
    size = params.group_size  # this process's rows: its prompt groups' responses
    rows = slice(groups.start * size, groups.stop * size)
    batch_level = getattr(algorithm.params, "level", None) == "batch"
    if distributed.processes() > 1 and batch_level:  # PAMA's option
        raise ConfigError(
            f"{algorithm.name} with level='batch' on {distributed.processes()} processes: its "
            "weights come from each process's token means, not the global batch's; use "
            "level='token' or one process"
        )
    policy = problem.policy
    policy.eval()  # no dropout: the importance ratio starts at exactly 1
    parameters = [p for p in policy.parameters() if p.requires_grad]
    gram_parameters = (
        last_block_parameters(policy) if params.gram_parameters == "last-block" else None
    )
    autogram_modules = gram_modules(policy, params, algorithm, micro_batches=1)
    optimizer = make_optimizer(params, parameters)
    prompt_rng = np.random.default_rng(seed)
    evaluate_every = max(1, params.steps // EVALUATIONS_ALONG_TRAINING)
    output = RunOutput(objectives=[])

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
        ][rows]  # fmt: skip
        sample_seed = (seed * 1_000_003 + step) * distributed.processes() + distributed.rank()
        responses = problem.sample(prompts, sample_seed)
        # the global batch's rewards, in the order of its prompts
        rewards = distributed.gather_rows(problem.rewards(prompts, responses), problem.device)
        algorithm.observe_rewards(rewards.mean(axis=0))  # the policy after the previous update
        batch = problem.batch(prompts, responses)
        mask = batch.response_mask[:, 1:].float()
        with torch.no_grad():
            rollout = Rollout(
                batch, mask, token_log_probs(policy, batch), problem.reference_log_probs(batch),
                distributed.average(mask.sum()),
            )  # fmt: skip
        if params.kl_in_reward:
            sequence_kl = ((rollout.old_log_probs - rollout.reference_log_probs) * mask).sum(dim=1)
            sequence_kl = distributed.gather(sequence_kl)
            rewards = rewards - params.kl_coef * sequence_kl.cpu().numpy()[:, None]
        learning_rate = params.learning_rate * algorithm.step_size_multiplier()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        try:
            output.gradient_evaluations += _online_step(
                policy, rollout, rewards, algorithm, optimizer, params, learning_rate,
                parameters, gram_parameters, problem.device, rows, autogram_modules,
            )  # fmt: skip
        except DivergedError as error:
            raise DivergedError(f"step {step}: {error}") from None

    output.objectives = problem.evaluate()
    if problem.capabilities is not None:
        output.capabilities = problem.capabilities(policy)
    output.trajectory.append(output.objectives)
    output.trajectory_steps.append(params.steps)
    weights = algorithm.weight_trajectory_point()
    if weights is not None:
        output.weight_trajectory.append(weights)
    output.steps = params.steps
    return output


def _online_step(
    policy: torch.nn.Module,
    rollout: Rollout,
    rewards: np.ndarray,
    algorithm: Algorithm,
    optimizer: torch.optim.Optimizer,
    params: LanguageParams,
    learning_rate: float,
    parameters: list[torch.Tensor],
    gram_parameters: list[torch.Tensor] | None,
    device: str,
    rows: slice,
    autogram_modules: list[torch.nn.Module] | None = None,
) -> int:
    """The `ppo_epochs` updates of one step on `rollout`, this process's `rows` of the global
    batch whose `rewards` are given; returns the gradient evaluations."""
    m = rewards.shape[1]
    evaluations = 0
    if algorithm.observes_gradients:  # the rule's weights move once, on this step's gradients
        losses = objective_losses(
            policy, rollout, group_advantages(rewards, params, device)[:, rows], params
        )
        check_finite_losses(losses)
        algorithm.observe_gram(loss_gram(losses, gram_parameters or parameters), learning_rate)
        evaluations += m
    scalarised = algorithm.online_reward(rewards)
    combined_rewards = scalarised if scalarised is not None else rewards
    advantage = group_advantages(combined_rewards, params, device)[:, rows]
    combines_gradients = isinstance(algorithm, GramRule) and scalarised is None
    for _ in range(params.ppo_epochs):
        if combines_gradients:
            combine_micro_batches(
                [lambda: objective_losses(policy, rollout, advantage, params)],
                parameters, algorithm, learning_rate, gram_parameters, autogram_modules,
            )  # fmt: skip
            evaluations += m if algorithm.needs_gram else 1
        else:
            ratio, kl = ratio_and_kl(policy, rollout, params)
            if isinstance(algorithm, AdvantageRule):
                token_advantages = advantage[:, :, None].expand(-1, -1, ratio.shape[1])
                combined = algorithm.combine_advantages(
                    token_advantages, ratio.detach(), rollout.mask
                )
            else:
                combined = advantage[0][:, None]
            loss = (
                clipped_surrogate(
                    combined, ratio, rollout.mask, params.clip_epsilon, rollout.tokens
                )
                + kl
            )
            check_finite_losses(loss.reshape(1))
            optimizer.zero_grad()
            loss.backward()
            distributed.average_gradients(parameters)
            evaluations += 1
        optimizer.step()
    return evaluations

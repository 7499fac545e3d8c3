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
processes (`moabench.core.gradients`). Sampling and scoring each end in
`distributed.failing_together`: a process whose sampling or scoring fails stops every process
with its error (the record of process 0 then says why), none waits in a collective for it.

Micro-batches (`micro_batch_size` responses, dividing each process's share): the rollout's
log-probabilities and every update are computed a micro-batch at a time, each cut to its longest
row (`Rollout.part`), and the gradients accumulated as in preference training; a micro-batch's
losses divide its token sums by the rollout's tokens / K, so the mean of the K micro-batches'
losses is the rollout's and the update is the same. PAMA's `level="batch"` (means over the
batch's tokens) is not supported on several processes or in micro-batches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from moabench.core import distributed
from moabench.core.algorithm import AdvantageRule, Algorithm, GramRule
from moabench.core.errors import ConfigError
from moabench.core.gradients import combine_micro_batches, descend_micro_batches, loss_gram
from moabench.core.task import DivergedError, RunOutput
from moabench.language.advantages import advantages as estimate_advantages
from moabench.language.lm import (
    Batch,
    Samples,
    last_block_parameters,
    select_rows,
    token_log_probs,
)
from moabench.language.params import LanguageParams
from moabench.language.training import (
    EVALUATIONS_ALONG_TRAINING,
    gram_modules,
    make_optimizer,
    micro_batch_rows,
    record_evaluation,
)


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
    #: (prompts, seed) -> the policy's responses: their text and the sampled token ids
    sample: Callable[[list[str], int], Samples]
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
    #: `old_log_probs` with their graph where the only update's forward would repeat theirs
    #: (`reuses_first_forward`): that update takes them instead of a forward of its own
    log_probs: torch.Tensor | None = None

    def part(self, rows: slice, parts: int, width: int) -> Rollout:
        """The `rows` of this rollout as one of `parts` equal micro-batches, cut to their
        `width` (the columns that are not padding in all of them); its losses divide by
        `tokens / parts`, so that the mean of the parts' losses is this rollout's."""
        batch = select_rows(self.batch, rows, width=width)
        width -= 1
        return Rollout(
            batch, self.mask[rows, :width], self.old_log_probs[rows, :width],
            self.reference_log_probs[rows, :width], self.tokens / parts,
        )  # fmt: skip


def micro_batch_parts(rows: int, size: int) -> list[slice]:
    """The rows of each micro-batch of `size` rows."""
    return [slice(start, start + size) for start in range(0, rows, size)]


def part_widths(batch: Batch, parts: list[slice]) -> list[int]:
    """Each part's width up to its longest row, from one host copy of the rows' lengths (one
    device sync for all the parts, where `select_rows` alone would take one per part)."""
    lengths = batch.attention_mask.sum(dim=1).tolist()
    return [max(lengths[rows]) for rows in parts]


def split_rollout(
    rollout: Rollout, advantage: torch.Tensor, parts: list[slice]
) -> list[tuple[Rollout, torch.Tensor]]:
    """The rollout and its (k, n) advantages in micro-batches (itself when there is one)."""
    if len(parts) == 1:
        return [(rollout, advantage)]
    widths = part_widths(rollout.batch, parts)
    return [
        (rollout.part(rows, len(parts), width), advantage[:, rows])
        for rows, width in zip(parts, widths)
    ]


def log_probs_in_parts(
    log_probs: Callable[[Batch], torch.Tensor], batch: Batch, parts: list[slice]
) -> torch.Tensor:
    """`log_probs(batch)`, (n, T - 1), computed micro-batch by micro-batch (each without its
    all-padding columns, which hold 0), without gradients."""
    with torch.no_grad():
        if len(parts) == 1:
            return log_probs(batch)
        whole = torch.zeros(
            batch.input_ids.shape[0], batch.input_ids.shape[1] - 1, device=batch.input_ids.device
        )
        for rows, width in zip(parts, part_widths(batch, parts)):
            values = log_probs(select_rows(batch, rows, width=width))
            whole[rows, : values.shape[1]] = values
        return whole


def group_advantages(rewards: np.ndarray, params: LanguageParams, device: str) -> torch.Tensor:
    """(n, k) rewards, n = prompts_per_step x group_size -> (k, n) advantages, one row per column."""
    grouped = rewards.reshape(params.prompts_per_step, params.group_size, -1)
    advantage = estimate_advantages(grouped, params.advantage).reshape(len(rewards), -1).T
    return torch.as_tensor(advantage, dtype=torch.float32, device=device)


def reuses_first_forward(
    params: LanguageParams,
    algorithm: Algorithm,
    parts: list[slice],
    autogram_modules: list[torch.nn.Module] | None,
) -> bool:
    """Whether the rollout's forward can serve as the step's only update's too: one update
    (`ppo_epochs` 1, no gradients observed before it), in one micro-batch, outside the autogram
    engine (whose hooks must see the forward). The policy is in eval mode, so the forward with
    gradients gives the same values as one without: the ratio is exactly 1 either way."""
    return (
        params.ppo_epochs == 1 and len(parts) == 1 and autogram_modules is None
        and not algorithm.observes_gradients
    )  # fmt: skip


def ratio_and_kl(
    policy: torch.nn.Module, rollout: Rollout, params: LanguageParams
) -> tuple[torch.Tensor, torch.Tensor | float]:
    """Per-token importance ratios pi / pi_old, and the KL loss term (0 with `kl_in_reward`)."""
    log_probs = rollout.log_probs
    if log_probs is None:
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
    size = micro_batch_rows(
        rows.stop - rows.start, params.micro_batch_size,
        f"prompts_per_step x group_size = {params.prompts_per_step} x {params.group_size}",
        "responses",
    )  # fmt: skip
    parts = micro_batch_parts(rows.stop - rows.start, size)
    if len(parts) > 1 and batch_level:
        raise ConfigError(
            f"{algorithm.name} with level='batch' and micro_batch_size={size}: its weights come "
            "from the means over the whole batch's tokens; use level='token' or no micro-batches"
        )
    policy = problem.policy
    policy.eval()  # no dropout: the importance ratio starts at exactly 1
    parameters = [p for p in policy.parameters() if p.requires_grad]
    gram_parameters = (
        last_block_parameters(policy) if params.gram_parameters == "last-block" else None
    )
    autogram_modules = gram_modules(policy, params, algorithm, micro_batches=len(parts))
    optimizer = make_optimizer(params, parameters)
    prompt_rng = np.random.default_rng(seed)
    evaluate_every = max(1, params.steps // EVALUATIONS_ALONG_TRAINING)
    output = RunOutput(objectives=[])

    for step in range(params.steps):
        if step % evaluate_every == 0:
            record_evaluation(output, step, params.steps, problem.evaluate())
            policy.eval()
            weights = algorithm.weight_trajectory_point()
            if weights is not None:
                output.weight_trajectory.append(weights)
        algorithm.begin_step()
        prompts = [
            p for p in problem.prompts(prompt_rng, params.prompts_per_step)
            for _ in range(params.group_size)
        ][rows]  # fmt: skip
        sample_seed = (seed * 1_000_003 + step) * distributed.processes() + distributed.rank()
        with distributed.failing_together():  # a process that fails here stops them all
            samples = problem.sample(prompts, sample_seed)
        with distributed.failing_together():
            own_rewards = problem.rewards(prompts, samples.responses)
        # the global batch's rewards, in the order of its prompts
        rewards = distributed.gather_rows(own_rewards, problem.device)
        algorithm.observe_rewards(rewards.mean(axis=0))  # the policy after the previous update
        batch = samples.batch.to(problem.device)  # what was sampled, not its text re-tokenized
        mask = batch.response_mask[:, 1:].float()
        first_forward = None
        if reuses_first_forward(params, algorithm, parts, autogram_modules):
            first_forward = token_log_probs(policy, batch)
            old_log_probs = first_forward.detach()
        else:
            old_log_probs = log_probs_in_parts(
                functools.partial(token_log_probs, policy), batch, parts
            )
        rollout = Rollout(
            batch, mask, old_log_probs,
            log_probs_in_parts(problem.reference_log_probs, batch, parts),
            distributed.average(mask.sum()), first_forward,
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
                parameters, gram_parameters, problem.device, rows, parts, autogram_modules,
            )  # fmt: skip
        except DivergedError as error:
            raise DivergedError(f"step {step}: {error}") from None

    output.objectives = problem.evaluate()
    if problem.capabilities is not None:
        output.capabilities = problem.capabilities(policy)
    record_evaluation(output, params.steps, params.steps, output.objectives)
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
    parts: list[slice],
    autogram_modules: list[torch.nn.Module] | None = None,
) -> int:
    """The `ppo_epochs` updates of one step on `rollout`, this process's `rows` of the global
    batch whose `rewards` are given, in the micro-batches `parts`; returns the gradient
    evaluations."""
    m = rewards.shape[1]
    evaluations = 0
    if algorithm.observes_gradients:  # the rule's weights move once, on this step's gradients
        per_objective = group_advantages(rewards, params, device)[:, rows]
        gram = loss_gram(
            [functools.partial(objective_losses, policy, part, advantage, params)
             for part, advantage in split_rollout(rollout, per_objective, parts)],
            gram_parameters or parameters,
        )  # fmt: skip
        algorithm.observe_gram(gram, learning_rate)
        evaluations += m
    scalarised = algorithm.online_reward(rewards)
    combined_rewards = scalarised if scalarised is not None else rewards
    advantage = group_advantages(combined_rewards, params, device)
    whole_rollout = algorithm.rollout_advantage(advantage)
    if whole_rollout is not None:
        advantage = whole_rollout
    micro_batches = split_rollout(rollout, advantage[:, rows], parts)
    for _ in range(params.ppo_epochs):
        if isinstance(algorithm, GramRule) and scalarised is None:
            combine_micro_batches(
                [functools.partial(objective_losses, policy, part, advantage, params)
                 for part, advantage in micro_batches],
                parameters, algorithm, learning_rate, gram_parameters, autogram_modules,
            )  # fmt: skip
            evaluations += m if algorithm.needs_gram else 1
        else:
            descend_micro_batches(
                [functools.partial(combined_loss, policy, part, advantage, algorithm, params)
                 for part, advantage in micro_batches],
                parameters,
            )  # fmt: skip
            evaluations += 1
        optimizer.step()
    return evaluations


def combined_loss(
    policy: torch.nn.Module,
    rollout: Rollout,
    advantage: torch.Tensor,
    algorithm: Algorithm,
    params: LanguageParams,
) -> torch.Tensor:
    """One clipped policy-gradient loss (plus the KL term) of the advantages combined before the
    loss: by an `AdvantageRule` per token from the (m, n) `advantage`, or the one row of a
    scalarised reward's."""
    ratio, kl = ratio_and_kl(policy, rollout, params)
    if isinstance(algorithm, AdvantageRule):
        token_advantages = advantage[:, :, None].expand(-1, -1, ratio.shape[1])
        combined = algorithm.combine_advantages(token_advantages, ratio.detach(), rollout.mask)
    else:
        combined = advantage[0][:, None]
    return (
        clipped_surrogate(combined, ratio, rollout.mask, params.clip_epsilon, rollout.tokens) + kl
    )

"""The preference trainer: per-objective DPO losses on a shared batch of pairs, combined by the
algorithm, at every scale.

Each step computes one DPO loss per objective on a shared batch of pairs,

    L_i = -mean log sigmoid(s_i * beta * [(log pi - log pi_ref)(y_a) - (log pi - log pi_ref)(y_b)])

with s_i = +1 when objective i prefers y_a, -1 when it prefers y_b, 0 for a tie (zero gradient),
and hands the m losses to `moabench.core.gradients.combine`, so every combination rule runs
unchanged. Loss-level algorithms (`PreferenceLoss`, e.g. MODPO) get the margins, labels and the
reward differences of the pairs (their margin reward models) and return one loss. The pairs, their
labels and the evaluation come from the scale (`PreferenceProblem`).

Data parallelism (`moabench.core.distributed`): `batch_size` is the global batch. Every process
draws the same global batch of pairs and trains on its equal share (in micro-batches of
`micro_batch_size`, which must divide the share); the gradients are the global batch's (averaged
over the processes, `moabench.core.gradients`), so every process takes the same step. Every
process computes the reference log-probabilities of all pairs, and evaluates the same policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from moabench.core.algorithm import Algorithm, GramRule, PreferenceLoss
from moabench.core.distributed import shard
from moabench.core.gradients import combine_micro_batches, descend_micro_batches
from moabench.core.task import DivergedError, RunOutput
from moabench.language.lm import Batch, last_block_parameters, select_rows, sequence_log_probs
from moabench.language.params import LanguageParams
from moabench.language.training import (
    EVALUATIONS_ALONG_TRAINING,
    gram_modules,
    make_optimizer,
    micro_batch_rows,
    record_evaluation,
)


def per_objective_dpo_losses(margins: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """L_i = -mean_k log sigmoid(s_ik * margin_k): margins (batch,), signs (m, batch) -> (m,)."""
    return -F.logsigmoid(signs * margins.unsqueeze(0)).mean(dim=1)


@dataclass
class PreferenceProblem:
    """What the trainer needs, at any scale: a policy, its pairs and an evaluation (built by
    `moabench.language.tiny` or `moabench.language.hub`)."""

    policy: torch.nn.Module
    pairs: Batch  # 2n rows: prompt + response a, then prompt + response b
    signs: torch.Tensor  # (m, n)
    #: r_i(y_a) - r_i(y_b) per objective (m, n), for margin-based losses (MODPO); computed on demand
    reward_differences: Callable[[], torch.Tensor]
    evaluate: Callable[[torch.nn.Module], list[float]]
    device: str = "cpu"
    #: cut each batch to its longest row (the tiny scale keeps its fixed width, so that its
    #: recorded results do not move)
    trim_padding: bool = True
    capabilities: Callable[[torch.nn.Module], dict[str, float]] | None = None
    #: log pi_ref of every pair's responses (2n,) where the scale has them already
    #: (`pair_reference_log_probs`; the tiny scale's per-process cache), else computed here
    reference_log_probs: torch.Tensor | None = None


def train_preference(
    problem: PreferenceProblem, algorithm: Algorithm, seed: int, params: LanguageParams, m: int
) -> RunOutput:
    """DPO training of `problem.policy` on its pairs, the m per-objective losses combined by a
    `GramRule` (through `combine_micro_batches`) or replaced by a `PreferenceLoss`."""
    if not isinstance(algorithm, GramRule | PreferenceLoss):
        raise TypeError(f"{algorithm.name} is neither a combination rule nor a preference loss")
    policy, pairs = problem.policy, problem.pairs
    n = pairs.input_ids.shape[0] // 2
    reference_log_probs = problem.reference_log_probs
    if reference_log_probs is None:
        reference_log_probs = pair_reference_log_probs(
            policy, pairs, params.micro_batch_size, problem.device
        )
    differences = problem.reward_differences() if isinstance(algorithm, PreferenceLoss) else None
    policy.train()
    parameters = [p for p in policy.parameters() if p.requires_grad]
    gram_parameters = (
        last_block_parameters(policy) if params.gram_parameters == "last-block" else None
    )
    share = shard(params.batch_size, "batch_size")  # this process's rows of each global batch
    pairs_here = share.stop - share.start
    micro_batch_size = micro_batch_rows(
        pairs_here, params.micro_batch_size, f"batch_size={params.batch_size}", "pairs"
    )
    micro_batches = pairs_here // micro_batch_size
    autogram_modules = gram_modules(policy, params, algorithm, micro_batches)
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
            record_evaluation(output, step, params.steps, problem.evaluate(policy))
        algorithm.begin_step()
        index = torch.randint(n, (params.batch_size,), generator=generator)[share]
        micro = index.split(micro_batch_size)
        try:
            if isinstance(algorithm, GramRule):
                combine_micro_batches(
                    [losses_of(part) for part in micro],
                    parameters,
                    algorithm,
                    params.learning_rate,
                    gram_parameters,
                    autogram_modules,
                )
            else:
                descend_micro_batches([losses_of(part) for part in micro], parameters)
        except DivergedError as error:
            raise DivergedError(f"step {step}: {error}") from None
        optimizer.step()
        weights = algorithm.weight_trajectory_point()
        if weights is not None and step % evaluate_every == 0:
            output.weight_trajectory.append(weights)

    output.objectives = problem.evaluate(policy)
    if problem.capabilities is not None:
        output.capabilities = problem.capabilities(policy)
    record_evaluation(output, params.steps, params.steps, output.objectives)
    output.steps = params.steps
    needs_gram = isinstance(algorithm, GramRule) and algorithm.needs_gram
    output.gradient_evaluations = params.steps * (m if needs_gram else 1)
    return output


def pair_reference_log_probs(
    policy, pairs: Batch, chunk: int | None, device: str
) -> torch.Tensor:
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

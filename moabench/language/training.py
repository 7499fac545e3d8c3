"""What the preference and online trainers share: evaluation schedule and its progress reports,
optimizer, reward checks, and the choice of the Gram matrix's engine (`gram_modules`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from moabench.core.algorithm import Algorithm, GramRule
from moabench.core.distributed import processes
from moabench.core.errors import ConfigError
from moabench.core.progress import report
from moabench.core.task import RunOutput
from moabench.language.lm import last_block_name

if TYPE_CHECKING:
    from moabench.language.params import LanguageParams

#: Seed of the held-out evaluation prompts and of the responses sampled to score them.
EVALUATION_SEED = 1234
#: Evaluations along training (besides the final one): every steps // this steps.
EVALUATIONS_ALONG_TRAINING = 4


def record_evaluation(output: RunOutput, step: int, steps: int, objectives: list[float]) -> None:
    """Add the evaluation after `step` of `steps` steps to the run's trajectory, and report it as
    progress (`moabench.core.progress`: the command line shows it while the run trains)."""
    output.trajectory.append(objectives)
    output.trajectory_steps.append(step)
    report(step, steps, objectives)


def make_optimizer(params: LanguageParams, parameters: list[torch.Tensor]) -> torch.optim.Optimizer:
    """Adam, or plain SGD: Adam's per-coordinate scaling changes the combined direction, so the
    descent guarantees of MGDA-like rules hold for SGD only."""
    if params.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=params.learning_rate)
    return torch.optim.Adam(parameters, lr=params.learning_rate)


def micro_batch_rows(share: int, micro_batch_size: int | None, batch: str, rows: str) -> int:
    """Rows per micro-batch of a process's `share` rows of the global batch (`micro_batch_size`,
    or the whole share), or a `ConfigError` when it does not divide the share (`batch` names the
    global batch, `rows` its rows, for the message)."""
    size = micro_batch_size or share
    if share % size:
        raise ConfigError(
            f"micro_batch_size={size} must divide each process's share of {batch}, {share} {rows}"
        )
    return size


def gram_modules(
    policy: torch.nn.Module, params: LanguageParams, algorithm: Algorithm, micro_batches: int
) -> list[torch.nn.Module] | None:
    """The modules on which torchjd's autogram engine computes the Gram matrix
    (`moabench.core.gradients.autogram`) when the run asks for it (`gram_engine='autogram'`, a
    parameter of the small and paper scales), or None for the Jacobian path (the tiny scale's
    only one). Autogram where it cannot apply is a `ConfigError` before training."""
    if getattr(params, "gram_engine", "jacobian") == "jacobian":
        return None
    if not (isinstance(algorithm, GramRule) and algorithm.needs_gram):
        return None
    if processes() > 1:
        raise ConfigError(
            f"gram_engine='autogram' on {processes()} processes: the global batch's Gram matrix "
            "holds cross terms between the processes' gradients that the engine never forms "
            "(each process has only its own); use gram_engine='jacobian'"
        )
    if params.gram_parameters == "last-block":
        module = policy.get_submodule(last_block_name(policy))
    else:
        module = policy
    obstacle = autogram_obstacle(module, micro_batches)
    if obstacle is not None:
        raise ConfigError(f"gram_engine='autogram': {obstacle}; use gram_engine='jacobian'")
    return [module]


def autogram_obstacle(module: torch.nn.Module, micro_batches: int) -> str | None:
    """Why torchjd's autogram engine cannot give the Gram matrix of `module`'s trainable
    parameters, or None. It computes one batch's Gram matrix (that of gradients accumulated over
    micro-batches needs their Jacobian), and contracts each module's Jacobian on its own, so a
    parameter used by two modules (tied input and output embeddings) would miss its cross terms.
    With activation checkpointing it holds every module's inputs and outputs and recomputes the
    checkpointed blocks during its Gram pass (10.3x LS's peak memory measured, BENCHMARKS.md).
    """
    if any(getattr(m, "gradient_checkpointing", False) is True for m in module.modules()):
        return (
            "with gradient_checkpointing the engine keeps the activations that checkpointing "
            "frees and recomputes blocks module by module (measured 10.3x LS's peak memory, 5.5x "
            "the Jacobian's)"
        )
    if micro_batches > 1:
        return (
            f"the Gram matrix of gradients accumulated over {micro_batches} micro-batches needs "
            "their Jacobian; without micro_batch_size (gradient_checkpointing saves activation "
            "memory instead) autogram applies"
        )
    owners: dict[int, str] = {}
    for name, unit in _autogram_units(module):
        for parameter_name, parameter in unit.named_parameters():
            if not parameter.requires_grad:
                continue
            first = owners.setdefault(id(parameter), name)
            if first != name:
                return (
                    f"the trained parameter {name}.{parameter_name} is also used by {first} "
                    "(tied weights); train with LoRA (lora_rank > 0) to keep it frozen"
                )
    return None


def _autogram_units(module: torch.nn.Module, prefix: str = "") -> list[tuple[str, torch.nn.Module]]:
    """The modules torchjd's engine hooks: the topmost ones with trainable parameters of their
    own (each then differentiated w.r.t. all its parameters, its children's included)."""
    if any(p.requires_grad for p in module.parameters(recurse=False)):
        return [(prefix or type(module).__name__, module)]
    return [
        unit
        for name, child in module.named_children()
        for unit in _autogram_units(child, f"{prefix}.{name}" if prefix else name)
    ]


def checked_scores(
    raw: object, objectives: Sequence[str], where: str, n: int | None = None
) -> np.ndarray:
    """Scores of n responses as float64 (n, m), or a `ConfigError` naming what is wrong with
    them (`where` names their source, such as "task 'safety': rewards()")."""
    m = len(objectives)
    try:
        rewards = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} returned non-numeric values: {str(raw)[:80]}") from None
    n = len(rewards) if n is None else n
    if rewards.shape != (n, m):
        raise ConfigError(
            f"{where} returned shape {rewards.shape} for {n} responses; expected ({n}, {m}): "
            f"one column per objective ({', '.join(objectives)})"
        )
    if not np.all(np.isfinite(rewards)):
        bad = sorted({objectives[j] for j in np.argwhere(~np.isfinite(rewards))[:, 1]})
        raise ConfigError(f"{where} returned NaN or infinite rewards for {', '.join(bad)}")
    return rewards

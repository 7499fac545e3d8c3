"""Per-objective gradients, their Gram matrix, and the combined update of a `GramRule`.

This is the one place where the O(m^2 d) cost of the gradient-level algorithms lives; analytic
problems, DPO losses and policy-gradient losses all go through `combine`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from moabench.core.algorithm import GramRule
from moabench.core.task import DivergedError


def per_objective_gradients(
    losses: torch.Tensor, parameters: Sequence[torch.Tensor]
) -> torch.Tensor:
    """The Jacobian of the m losses w.r.t. the flattened parameters, shape (m, d)."""
    rows = []
    for i in range(losses.shape[0]):
        grads = torch.autograd.grad(losses[i], parameters, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (g if g is not None else torch.zeros_like(p)).reshape(-1)
                    for g, p in zip(grads, parameters)
                ]
            )
        )
    return torch.stack(rows)


def gram_matrix(jacobian: torch.Tensor) -> np.ndarray:
    """H_ij = <g_i, g_j> as a float64 numpy array (rules are pure functions of this m x m matrix)."""
    jacobian = jacobian.detach().double()
    return (jacobian @ jacobian.T).cpu().numpy()


def loss_gram(losses: torch.Tensor, parameters: Sequence[torch.Tensor]) -> np.ndarray:
    """The Gram matrix of the m losses' gradients with respect to `parameters` (no update)."""
    return gram_matrix(per_objective_gradients(losses, parameters))


def check_finite_losses(losses: torch.Tensor) -> None:
    """Raise `DivergedError` when a loss is NaN or infinite."""
    values = losses.detach().cpu().numpy()
    if not np.all(np.isfinite(values)):
        raise DivergedError(f"non-finite objectives {values.tolist()}")


def rule_direction(
    jacobian: torch.Tensor, rule: GramRule, learning_rate: float = 0.0
) -> tuple[np.ndarray, torch.Tensor]:
    """The rule's coefficients a and direction sum_i a_i g_i from the (m, d) Jacobian."""
    gram = gram_matrix(jacobian)
    if not np.all(np.isfinite(gram)):  # a non-finite gradient makes its diagonal entry non-finite
        raise DivergedError("non-finite per-objective gradients")
    coefficients = rule.coefficients(gram, learning_rate)
    if not np.all(np.isfinite(coefficients)):
        raise DivergedError(f"non-finite coefficients {coefficients.tolist()} from {rule.name}")
    direction = (
        torch.as_tensor(coefficients, dtype=jacobian.dtype, device=jacobian.device) @ jacobian
    )
    return coefficients, direction


def combine(
    losses: torch.Tensor,
    parameters: Sequence[torch.Tensor],
    rule: GramRule,
    learning_rate: float = 0.0,
    gram_parameters: Sequence[torch.Tensor] | None = None,
) -> np.ndarray:
    """Set each parameter's `.grad` to the rule's direction sum_i a_i g_i; return a.

    Rules that do not need the Gram matrix (`needs_gram = False`, e.g. linear scalarization) take
    one backward pass of sum_i a_i L_i instead of m. With `gram_parameters` (a subset, e.g. GAPO's
    last-layer variant) the Gram matrix comes from the gradients on that subset only, and the
    update is one backward pass of sum_i a_i L_i over all parameters.
    """
    return combine_micro_batches([lambda: losses], parameters, rule, learning_rate, gram_parameters)


def combine_micro_batches(
    micro_batch_losses: Sequence[Callable[[], torch.Tensor]],
    parameters: Sequence[torch.Tensor],
    rule: GramRule,
    learning_rate: float = 0.0,
    gram_parameters: Sequence[torch.Tensor] | None = None,
) -> np.ndarray:
    """`combine` for a step whose losses are the mean over K equal micro-batches (gradient
    accumulation): each callable computes one micro-batch's (m,) losses. The per-objective
    gradients are accumulated before the rule sees them, so the update equals the full-batch
    one; a micro-batch is recomputed only when a Gram subset needs a second backward pass."""
    k = len(micro_batch_losses)
    for parameter in parameters:
        parameter.grad = None
    if not rule.needs_gram:
        coefficients = rule.coefficients(np.empty((0, 0)), learning_rate)
        for losses_of in micro_batch_losses:
            _accumulate(_weighted(losses_of(), coefficients) / k, parameters)
        return coefficients

    subset = parameters if gram_parameters is None else gram_parameters
    jacobian, kept = None, []
    for losses_of in micro_batch_losses:
        losses = losses_of()
        check_finite_losses(losses)
        part = per_objective_gradients(losses / k, subset)
        jacobian = part if jacobian is None else jacobian + part
        kept.append(losses if k == 1 else None)
    coefficients, direction = rule_direction(jacobian, rule, learning_rate)
    if gram_parameters is None:
        offset = 0
        for parameter in parameters:
            size = parameter.numel()
            parameter.grad = (
                direction[offset : offset + size].view_as(parameter).to(parameter.dtype)
            )
            offset += size
    else:
        for losses, losses_of in zip(kept, micro_batch_losses):
            _accumulate(
                _weighted(losses if losses is not None else losses_of(), coefficients) / k,
                parameters,
            )
    return coefficients


def _weighted(losses: torch.Tensor, coefficients: np.ndarray) -> torch.Tensor:
    check_finite_losses(losses)
    return losses @ torch.as_tensor(coefficients, dtype=losses.dtype, device=losses.device)


def _accumulate(loss: torch.Tensor, parameters: Sequence[torch.Tensor]) -> None:
    """Add d loss / d parameter to each `.grad` (parameters the loss does not reach get zeros)."""
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    for parameter, grad in zip(parameters, grads):
        grad = grad if grad is not None else torch.zeros_like(parameter)
        parameter.grad = grad if parameter.grad is None else parameter.grad + grad

"""Per-objective gradients, their Gram matrix, and the combined update of a `GramRule`.

This is the one place where the O(m^2 d) cost of the gradient-level algorithms lives; analytic
problems, DPO losses and policy-gradient losses all go through `combine`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from moabench.algorithm import GramRule
from moabench.task import DivergedError


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
) -> np.ndarray:
    """Set each parameter's `.grad` to the rule's direction sum_i a_i g_i; return a.

    Rules that do not need the Gram matrix (`needs_gram = False`, e.g. linear scalarization) take
    one backward pass of sum_i a_i L_i instead of m.
    """
    check_finite_losses(losses)
    if not rule.needs_gram:
        coefficients = rule.coefficients(np.empty((0, 0)), learning_rate)
        weighted = losses @ torch.as_tensor(coefficients, dtype=losses.dtype, device=losses.device)
        grads = torch.autograd.grad(weighted, parameters, allow_unused=True)
        for parameter, grad in zip(parameters, grads):
            parameter.grad = grad if grad is not None else torch.zeros_like(parameter)
        return coefficients

    coefficients, direction = rule_direction(
        per_objective_gradients(losses, parameters), rule, learning_rate
    )
    offset = 0
    for parameter in parameters:
        size = parameter.numel()
        parameter.grad = direction[offset : offset + size].view_as(parameter).to(parameter.dtype)
        offset += size
    return coefficients

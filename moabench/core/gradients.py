"""Per-objective gradients, their Gram matrix, and the combined update of a `GramRule`.

This is the one place where the O(m^2 d) cost of the gradient-level algorithms lives; analytic
problems, DPO losses and policy-gradient losses all go through `combine`.

Two ways to the m x m Gram matrix H = J J^T of the m losses' gradients (J: the m x d Jacobian):
- the Jacobian path (default): m backward passes give J, H = J J^T, and the update is a^T J;
- `gram_modules` (torchjd's autogram engine, Jacobian descent paper, arXiv:2406.16232, Section 6
  and Algorithm 3): one backward pass batched over the m losses contracts each module's block of
  J into H as soon as it is computed, so the m gradients are never held together; the update is
  then one backward pass of sum_i a_i L_i. Same H and update (to float rounding), without the
  m x d memory; it needs the losses of one micro-batch and no parameter shared between modules.

Data parallelism (`moabench.core.distributed`): each process's losses are means over its equal
share of the global batch, so the global batch's Jacobian is the mean of the processes' ones.
`combine_micro_batches` and `loss_gram` average J over the processes (all-reduce) before H, so
every process computes the global batch's H and the same coefficients; where the update is a
backward pass of sum_i a_i L_i (rules without a Gram matrix, a Gram subset) the gradients are
averaged instead. The autogram engine cannot: H of the global batch holds cross terms between
the processes' gradients that no process's H has (`moabench.language.training.gram_modules`
rejects it). `check_finite_losses` raises on every process together, so that none waits for the
others in a collective; a step checks its micro-batches' losses once, after the last (one
gather and host sync per step, not per micro-batch). With one process all of this is the
identity.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from moabench.core import distributed
from moabench.core.algorithm import GramRule
from moabench.core.task import DivergedError

#: Columns of the Jacobian per float64 block of `gram_matrix`: the float64 copy stays under
#: m x 128 MiB whatever d (models up to this size take one block, as they always did).
GRAM_BLOCK = 1 << 24


def per_objective_gradients(
    losses: torch.Tensor, parameters: Sequence[torch.Tensor], into: torch.Tensor | None = None
) -> torch.Tensor:
    """The Jacobian of the m losses w.r.t. the flattened parameters, shape (m, d), each row
    written in place (no stacked copy); with `into`, added to `into` in place (gradient
    accumulation holds one Jacobian, not two)."""
    if into is None:
        dtype = functools.reduce(torch.promote_types, [p.dtype for p in parameters])
        size = sum(p.numel() for p in parameters)
        jacobian = torch.empty(losses.shape[0], size, dtype=dtype, device=losses.device)
    else:
        jacobian = into
    for i in range(losses.shape[0]):
        grads = torch.autograd.grad(losses[i], parameters, retain_graph=True, allow_unused=True)
        if into is None:
            parts = [
                (g if g is not None else torch.zeros_like(p)).reshape(-1)
                for g, p in zip(grads, parameters)
            ]
            torch.cat(parts, out=jacobian[i])
            continue
        offset = 0
        for g, p in zip(grads, parameters):
            if g is not None:
                jacobian[i, offset : offset + p.numel()].add_(g.reshape(-1))
            offset += p.numel()
    return jacobian


def gram_matrix(jacobian: torch.Tensor) -> np.ndarray:
    """H_ij = <g_i, g_j> as a float64 numpy array (rules are pure functions of this m x m matrix),
    summed over blocks of `GRAM_BLOCK` columns."""
    gram = None
    for block in jacobian.detach().split(GRAM_BLOCK, dim=1):
        block = block.double()
        gram = block @ block.T if gram is None else gram + block @ block.T
    return gram.cpu().numpy()


def autogram(
    gram_modules: Sequence[torch.nn.Module], losses_of: Callable[[], torch.Tensor]
) -> tuple[torch.Tensor, np.ndarray]:
    """(losses, Gram matrix of their gradients w.r.t. the parameters of `gram_modules`) from
    torchjd's autogram engine, hooked on the modules for this one forward pass (`losses_of()`)
    and its Gram pass only, so other passes never meet its hooks."""
    from torchjd.autogram import Engine  # torchjd's import (cvxpy, scipy) costs seconds

    engine = Engine(*gram_modules, batch_dim=None)
    registry = getattr(engine, "_target_edges", None)  # torchjd 0.18's internals: `leaf_edges`
    if hasattr(registry, "get_leaf_edges") and hasattr(registry, "_edges"):
        registry.get_leaf_edges = lambda roots: leaf_edges(registry._edges, roots)
    losses = losses_of()
    check_finite_losses(losses)
    return losses, engine.compute_gramian(losses).detach().double().cpu().numpy()


def leaf_edges(registered: set, roots: set) -> set:
    """The registered gradient edges below which no other registered edge lies: those the
    engine's Gram pass must differentiate to so that it runs every module's node.

    Replaces torchjd 0.18's `EdgeRegistry.get_leaf_edges`, whose breadth-first search keeps an
    edge when the edge below it was first reached along another path (the residual stream), so
    that the Gram pass returned, and held until its end, the gradients of about five module
    outputs per transformer layer (measured: 120 MB more per layer on an 83M-parameter Llama,
    2.8 GB in all); here it differentiates to the embedding's output alone. A torchjd without
    that method keeps its own search (the same Gram matrix, more memory)."""
    from torch.autograd.graph import GradientEdge

    def below(node) -> list:
        return [GradientEdge(child, nr) for child, nr in node.next_functions if child is not None]

    holds: dict = {}  # node -> whether a registered edge lies below it
    stack = [(edge.node, False) for edge in roots]
    while stack:  # depth first, children before their parent (a graph is deeper than recursion)
        node, children_done = stack.pop()
        if children_done:
            holds[node] = any(e in registered or holds[e.node] for e in below(node))
        elif node not in holds:
            holds[node] = False  # visited; set for real once its children are done
            stack.append((node, True))
            stack.extend((e.node, False) for e in below(node) if e.node not in holds)
    return {edge for edge in registered if edge.node in holds and not holds[edge.node]}


def loss_gram(
    micro_batch_losses: Sequence[Callable[[], torch.Tensor]], parameters: Sequence[torch.Tensor]
) -> np.ndarray:
    """The Gram matrix of the gradients w.r.t. `parameters` of the m losses of a step that are
    the mean over K micro-batches (each callable computes one's (m,) losses), with no update;
    those of the global batch on several processes."""
    return gram_matrix(_accumulated_jacobian(micro_batch_losses, parameters)[0])


def descend_micro_batches(
    micro_batch_loss: Sequence[Callable[[], torch.Tensor]],
    parameters: Sequence[torch.Tensor],
    coefficients: np.ndarray | None = None,
) -> None:
    """Set each parameter's `.grad` to the gradient of one loss that is the mean over K
    micro-batches (each callable computes one's scalar loss, or with `coefficients` its m losses,
    weighted to sum_i a_i L_i), accumulated micro-batch by micro-batch; that of the global batch
    on several processes. The losses are checked once, after the last micro-batch."""
    for parameter in parameters:
        parameter.grad = None
    observed = []
    for loss_of in micro_batch_loss:
        losses = loss_of()
        observed.append(losses.detach().reshape(-1))
        loss = losses if coefficients is None else _weighted(losses, coefficients)
        _accumulate(loss / len(micro_batch_loss), parameters)
    check_finite_losses(torch.cat(observed))
    distributed.average_gradients(parameters)


def check_finite_losses(losses: torch.Tensor) -> None:
    """Raise `DivergedError` when a loss is NaN or infinite, on any process (every process then
    raises)."""
    values = distributed.gather(losses.detach()).cpu().numpy()
    if not np.all(np.isfinite(values)):
        raise DivergedError(f"non-finite objectives {values.tolist()}")


def rule_coefficients(gram: np.ndarray, rule: GramRule, learning_rate: float = 0.0) -> np.ndarray:
    """The rule's coefficients a from the Gram matrix, or `DivergedError` if either is not finite."""
    if not np.all(np.isfinite(gram)):  # a non-finite gradient makes its diagonal entry non-finite
        raise DivergedError("non-finite per-objective gradients")
    coefficients = rule.coefficients(gram, learning_rate)
    if not np.all(np.isfinite(coefficients)):
        raise DivergedError(f"non-finite coefficients {coefficients.tolist()} from {rule.name}")
    return coefficients


def rule_direction(
    jacobian: torch.Tensor, rule: GramRule, learning_rate: float = 0.0
) -> tuple[np.ndarray, torch.Tensor]:
    """The rule's coefficients a and direction sum_i a_i g_i from the (m, d) Jacobian."""
    coefficients = rule_coefficients(gram_matrix(jacobian), rule, learning_rate)
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
    update is one backward pass of sum_i a_i L_i over all parameters. On several processes the
    gradients are those of the global batch (module docstring).
    """
    return combine_micro_batches([lambda: losses], parameters, rule, learning_rate, gram_parameters)


def combine_micro_batches(
    micro_batch_losses: Sequence[Callable[[], torch.Tensor]],
    parameters: Sequence[torch.Tensor],
    rule: GramRule,
    learning_rate: float = 0.0,
    gram_parameters: Sequence[torch.Tensor] | None = None,
    gram_modules: Sequence[torch.nn.Module] | None = None,
) -> np.ndarray:
    """`combine` for a step whose losses are the mean over K equal micro-batches (gradient
    accumulation): each callable computes one micro-batch's (m,) losses. The per-objective
    gradients are accumulated before the rule sees them, so the update equals the full-batch
    one; a micro-batch is recomputed only when a Gram subset needs a second backward pass.

    With `gram_modules` (one micro-batch only) the Gram matrix of the gradients w.r.t. their
    parameters comes from torchjd's autogram engine instead of the Jacobian (`autogram`), and
    the update is one backward pass of sum_i a_i L_i; `gram_parameters` is then not used."""
    k = len(micro_batch_losses)
    if not rule.needs_gram:
        coefficients = rule.coefficients(np.empty((0, 0)), learning_rate)
        descend_micro_batches(micro_batch_losses, parameters, coefficients)
        return coefficients
    if gram_modules is not None:
        if k != 1 or distributed.processes() > 1:
            raise ValueError(
                "the autogram engine gives one micro-batch's Gram matrix on one process; got "
                f"{k} micro-batches on {distributed.processes()} processes"
            )
        losses, gram = autogram(gram_modules, micro_batch_losses[0])
        coefficients = rule_coefficients(gram, rule, learning_rate)
        descend_micro_batches([lambda: losses], parameters, coefficients)
        return coefficients

    subset = parameters if gram_parameters is None else gram_parameters
    jacobian, kept = _accumulated_jacobian(micro_batch_losses, subset)
    coefficients, direction = rule_direction(jacobian, rule, learning_rate)
    if gram_parameters is None:
        offset = 0
        for parameter in parameters:
            size = parameter.numel()
            parameter.grad = (
                direction[offset : offset + size].view_as(parameter).to(parameter.dtype)
            )
            offset += size
    else:  # a second backward pass; a single micro-batch's graph was kept for it
        recomputed = micro_batch_losses if kept is None else [lambda: kept]
        descend_micro_batches(recomputed, parameters, coefficients)
    return coefficients


def _accumulated_jacobian(
    micro_batch_losses: Sequence[Callable[[], torch.Tensor]], parameters: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The (m, d) Jacobian of the mean of the micro-batches' losses (averaged over the
    processes; accumulated in place), and the losses themselves when there is one micro-batch
    (else None). The losses are checked once, after the last micro-batch."""
    k = len(micro_batch_losses)
    jacobian, observed = None, []
    for losses_of in micro_batch_losses:
        losses = losses_of()
        observed.append(losses.detach())
        jacobian = per_objective_gradients(losses / k, parameters, into=jacobian)
    check_finite_losses(torch.cat(observed))
    return distributed.average(jacobian), losses if k == 1 else None


def _weighted(losses: torch.Tensor, coefficients: np.ndarray) -> torch.Tensor:
    """sum_i a_i L_i of one micro-batch's losses."""
    return losses @ torch.as_tensor(coefficients, dtype=losses.dtype, device=losses.device)


def _accumulate(loss: torch.Tensor, parameters: Sequence[torch.Tensor]) -> None:
    """Add d loss / d parameter to each `.grad` (parameters the loss does not reach get zeros)."""
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    for parameter, grad in zip(parameters, grads):
        grad = grad if grad is not None else torch.zeros_like(parameter)
        parameter.grad = grad if parameter.grad is None else parameter.grad + grad

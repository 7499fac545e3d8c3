import numpy as np
import pytest
import torch

from moabench import combine, make_algorithm, per_objective_gradients
from moabench.task import DivergedError


def losses_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.stack([(x**2).sum() + y.sum(), (x - 1).pow(2).sum() * y.prod()])


def test_per_objective_gradients_are_the_jacobian():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = torch.tensor([3.0], requires_grad=True)
    jacobian = per_objective_gradients(losses_of(x, y), [x, y])
    expected = torch.autograd.functional.jacobian(lambda a, b: losses_of(a, b), (x, y))
    assert torch.allclose(jacobian, torch.cat([expected[0], expected[1]], dim=1))


@pytest.mark.parametrize("name", ["mgda", "raco", "p-gapo"])
def test_combine_sets_the_rules_direction(name):
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = torch.tensor([3.0], requires_grad=True)
    losses = losses_of(x, y)
    jacobian = per_objective_gradients(losses, [x, y])
    rule = make_algorithm(name, [0.3, 0.7])
    a = combine(losses, [x, y], rule)
    direction = torch.as_tensor(a, dtype=torch.float32) @ jacobian
    assert torch.allclose(torch.cat([x.grad, y.grad]), direction)


def test_linear_scalarization_takes_one_backward_of_the_weighted_sum():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = torch.tensor([3.0], requires_grad=True)
    combine(losses_of(x, y), [x, y], make_algorithm("ls", [0.3, 0.7]))
    x2, y2 = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
    (losses_of(x2, y2) @ torch.tensor([0.3, 0.7])).backward()
    assert torch.allclose(x.grad, x2.grad) and torch.allclose(y.grad, y2.grad)


def test_non_finite_losses_or_coefficients_raise_diverged():
    x = torch.tensor([1.0], requires_grad=True)
    with pytest.raises(DivergedError, match="non-finite objectives"):
        combine(torch.stack([x.sum() * np.inf, x.sum()]), [x], make_algorithm("mgda", [0.5, 0.5]))
    with pytest.raises(DivergedError, match="non-finite coefficients"):
        combine(torch.stack([x.sum(), 2 * x.sum()]), [x], make_algorithm("nan-rule", [0.5, 0.5]))

import numpy as np
import pytest
import torch

from moabench import combine, make_algorithm, per_objective_gradients
from moabench.core.gradients import combine_micro_batches
from moabench.core.task import DivergedError


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


@pytest.mark.parametrize("rule", ["ls", "mgda", "raco"])
@pytest.mark.parametrize("subset", [False, True])
def test_micro_batches_give_the_full_batch_update(rule, subset):
    """Gradient accumulation: 4 micro-batches of 2 write the same .grad as one batch of 8, also
    when the Gram matrix comes from a parameter subset (GAPO's last-layer variant)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x, parameters = torch.randn(8, 3), list(model.parameters())
    gram_parameters = parameters[2:] if subset else None

    def losses(rows):
        return lambda: (
            (model(x[rows]) ** 2).mean(dim=0)
            + torch.tensor([0.0, 1.0]) * model(x[rows]).mean(dim=0)
        )

    algorithm = make_algorithm(rule, [0.6, 0.4])
    whole = combine_micro_batches(
        [losses(slice(0, 8))], parameters, algorithm, 0.1, gram_parameters
    )
    expected = [p.grad.clone() for p in parameters]
    parts = [losses(slice(i, i + 2)) for i in range(0, 8, 2)]
    accumulated = combine_micro_batches(parts, parameters, algorithm, 0.1, gram_parameters)
    assert accumulated == pytest.approx(whole, rel=1e-5)
    for p, e in zip(parameters, expected):
        assert torch.allclose(p.grad, e, atol=1e-6)
    if (
        subset and rule != "ls"
    ):  # the subset's Gram matrix is not the whole one: coefficients differ
        full = combine_micro_batches([losses(slice(0, 8))], parameters, algorithm, 0.1)
        assert not np.allclose(full, whole)


def test_a_step_checks_its_losses_once_and_accumulates_the_jacobian_in_place(monkeypatch):
    """One finiteness check (a gather and host sync on several processes) per step, not per
    micro-batch; the accumulated Jacobian is the one tensor written micro-batch by micro-batch."""
    from moabench.core import gradients

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    x = torch.randn(8, 3)
    rows = torch.arange(8).split(2)
    parts = [lambda part=part: (model(x[part]) ** 2).mean(dim=0) for part in rows]
    checks, written = [], []
    check = gradients.check_finite_losses
    monkeypatch.setattr(gradients, "check_finite_losses", lambda v: (checks.append(v), check(v)))
    per_objective = gradients.per_objective_gradients

    def spied(losses, parameters, into=None):
        jacobian = per_objective(losses, parameters, into=into)
        written.append(jacobian.data_ptr())
        return jacobian

    monkeypatch.setattr(gradients, "per_objective_gradients", spied)
    jacobian, _ = gradients._accumulated_jacobian(parts, list(model.parameters()))
    assert len(checks) == 1 and checks[0].shape == (8,)  # 4 micro-batches x 2 losses
    assert len(set(written)) == 1  # in place
    whole = per_objective((model(x) ** 2).mean(dim=0), list(model.parameters()))
    torch.testing.assert_close(jacobian, whole)

"""The analytic problems: formulas against pymoo, exact fronts, gradients, reproducibility."""

import math

import numpy as np
import pytest
import torch
from pymoo.problems import get_problem

from moabench import make_task, per_objective_gradients
from moabench.metrics import nondominated
from moabench.runner import execute, resolve_config

ANALYTIC = ["zdt1", "zdt2", "fonseca", "cagrad-toy", "dtlz2"]


@pytest.mark.parametrize(("name", "extra"), [("zdt1", {}), ("zdt2", {}), ("dtlz2", {"n_obj": 3})])
def test_evaluate_matches_pymoo_row_by_row_and_batched(name, extra):
    task = make_task(name)
    rng = np.random.default_rng(0)
    points = rng.uniform(0.01, 1.0, size=(20, task.n_var))
    expected = get_problem(name, n_var=task.n_var, **extra).evaluate(points)
    batched = task.evaluate(torch.as_tensor(points)).numpy()
    rows = np.stack([task.evaluate(torch.as_tensor(p)).numpy() for p in points])
    assert batched == pytest.approx(expected, abs=1e-12)
    assert rows == pytest.approx(batched, abs=1e-12)


def test_fronts_have_their_known_shapes():
    zdt1, zdt2 = make_task("zdt1").pareto_front(), make_task("zdt2").pareto_front()
    assert zdt1[:, 1] == pytest.approx(1 - np.sqrt(zdt1[:, 0]))
    assert zdt2[:, 1] == pytest.approx(1 - zdt2[:, 0] ** 2)
    dtlz2 = make_task("dtlz2").pareto_front()
    assert (dtlz2**2).sum(axis=1) == pytest.approx(np.ones(len(dtlz2)))
    fonseca = make_task("fonseca").pareto_front()
    end = 1 - math.exp(-4)
    assert fonseca[0] == pytest.approx([end, 0.0]) and fonseca[-1] == pytest.approx([0.0, end])


@pytest.mark.parametrize("name", ANALYTIC)
def test_fronts_are_non_dominated_and_inside_the_normalisation_box(name):
    task = make_task(name)
    front = task.pareto_front()
    assert len(nondominated(front)) == len(np.unique(front, axis=0))
    normalised = task.space.normalize(front)
    assert normalised.min() >= -1e-9 and normalised.max() <= 1 + 1e-9


@pytest.mark.parametrize("name", ["zdt1", "zdt2", "dtlz2", "fonseca"])
def test_pareto_optimal_points_lie_on_the_front(name):
    task = make_task(name)
    t = np.linspace(0, 1, 7)
    if name.startswith("zdt"):
        xs = [np.concatenate([[v], np.zeros(task.n_var - 1)]) for v in t]
    elif name == "dtlz2":
        xs = [np.concatenate([[v, 1 - v], np.full(task.n_var - 2, 0.5)]) for v in t]
    else:
        s = 1 / math.sqrt(task.n_var)
        xs = [np.full(task.n_var, -s + 2 * s * v) for v in t]
    values = task.evaluate(torch.as_tensor(np.array(xs))).numpy()
    if name == "dtlz2":  # its sampled front is coarse: check the sphere itself
        assert (values**2).sum(axis=1) == pytest.approx(np.ones(len(values)))
        return
    front = task.pareto_front()
    distances = np.min(np.linalg.norm(values[:, None, :] - front[None, :, :], axis=2), axis=1)
    assert distances.max() < 0.02  # within the front's sampling resolution


@pytest.mark.parametrize("name", ANALYTIC)
def test_the_one_pass_jacobian_equals_per_objective_backward_passes(name):
    task = make_task(name)
    generator = torch.Generator().manual_seed(3)
    for x in (task.initial_point(generator), task.lower(), task.upper()):
        leaf = x.clone().requires_grad_(True)
        expected = per_objective_gradients(task.evaluate(leaf), [leaf])
        values, jacobian = task.jacobian(x)
        assert torch.allclose(jacobian, expected) and torch.all(torch.isfinite(jacobian))
        assert torch.allclose(values, task.evaluate(x))


@pytest.mark.parametrize("name", ANALYTIC)
def test_initial_points_are_reproducible_by_seed(name):
    task = make_task(name)
    first = task.initial_point(torch.Generator().manual_seed(7))
    assert torch.equal(first, task.initial_point(torch.Generator().manual_seed(7)))
    assert not torch.equal(first, task.initial_point(torch.Generator().manual_seed(8)))
    assert torch.all(first >= task.lower()) and torch.all(first <= task.upper())


def test_runs_are_reproducible_and_count_their_gradients():
    config = resolve_config("mgda", "dtlz2", [0.2, 0.3, 0.5], seed=4)
    first, second = execute(config), execute(config)
    assert first.objectives == second.objectives and first.trajectory == second.trajectory
    steps = first.config.task_params["steps"]
    assert first.trajectory.steps[0] == 0 and first.trajectory.steps[-1] == steps
    assert first.cost.gradient_evaluations == 3 * steps
    assert (
        execute(resolve_config("ls", "dtlz2", [0.2, 0.3, 0.5])).cost.gradient_evaluations == steps
    )

"""The analytic problems: formulas against pymoo, exact fronts, gradients, reproducibility."""

import math

import numpy as np
import pytest
import torch
from pymoo.problems import get_problem

from moabench import make_algorithm, make_task, per_objective_gradients
from moabench.evaluation.metrics import hypervolume, nondominated
from moabench.runs.runner import execute, resolve_config

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


# --- the CAGrad toy, the ZDT floor, corners, default tuning -----------------------------------


def paper_toy(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """The CAGrad toy's objectives transcribed term by term from Liu et al. (2021), Sec. 5.1."""
    floor = 5e-6
    log1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), floor).log() + 6
    log2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), floor).log() + 6
    sq1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    sq2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    up, down = torch.clamp(torch.tanh(x2 * 0.5), 0), torch.clamp(torch.tanh(-x2 * 0.5), 0)
    return torch.stack([log1 * up + sq1 * down, log2 * up + sq2 * down], dim=-1)


def test_cagrad_toy_matches_the_paper_formulas():
    task = make_task("cagrad-toy")
    x = 20 * torch.rand(2000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x - 10
    assert torch.allclose(task.evaluate(x), paper_toy(x[:, 0], x[:, 1]), rtol=1e-13, atol=1e-13)
    # the paper's optimum of the mean, x = (0, -8.3552): both objectives about -15.1 there
    assert task.evaluate(torch.tensor([0.0, -8.3552], dtype=torch.float64)).tolist() == (
        pytest.approx([-15.1, -15.1], abs=0.1)
    )


def test_cagrad_toy_paper_segment_lies_on_the_numerical_front():
    """The paper's Pareto set is close to the segment x2 = -8.3552, x1 in [-7, 7]."""
    task = make_task("cagrad-toy")
    x1 = torch.linspace(-7, 7, 29, dtype=torch.float64)
    values = task.evaluate(torch.stack([x1, torch.full_like(x1, -8.3552)], dim=1)).numpy()
    front = task.pareto_front()
    normalised, front_n = task.space.normalize(values), task.space.normalize(front)
    distances = np.min(np.linalg.norm(normalised[:, None] - front_n[None], axis=2), axis=1)
    assert distances.max() < 0.005
    # no front point is beaten by these points: the front is not above the segment
    for v in values:
        assert not np.any(np.all(v < front - 1e-6, axis=1))


def test_cagrad_toy_front_is_not_dominated_by_a_grid_over_the_whole_box():
    """The numerical front comes from a grid over the Pareto set's region only; a coarser grid
    over all of [-10, 10]^2 finds nothing better."""
    task = make_task("cagrad-toy")
    grid = torch.linspace(-10, 10, 401, dtype=torch.float64)
    values = task.evaluate(torch.cartesian_prod(grid, grid)).numpy()
    candidates = nondominated(values)
    front = task.pareto_front()
    for c in candidates:  # how far c is below some front point in both objectives
        assert np.max(np.min(front - c, axis=1)) < 1e-6


def test_cagrad_toy_front_is_dense_and_spans_both_ends():
    front = make_task("cagrad-toy").pareto_front()
    ordered = front[np.argsort(front[:, 0])]
    assert np.all(np.diff(ordered[:, 1]) < 0)  # a 2-D non-dominated set, sorted
    assert np.linalg.norm(np.diff(ordered, axis=0), axis=1).max() < 0.1  # raw units, range ~20
    assert ordered[0] == pytest.approx([-19.99, -0.40], abs=0.01)
    assert ordered[-1] == pytest.approx([-0.40, -19.99], abs=0.01)
    assert make_task("cagrad-toy").pareto_front() is front  # cached


@pytest.mark.parametrize("name", ["zdt1", "zdt2"])
def test_zdt_fronts_have_500_points(name):
    front = make_task(name).pareto_front()
    assert len(front) == 500 and front[:, 0] == pytest.approx(np.linspace(0, 1, 500))


def test_zdt1_gradient_is_finite_where_the_square_root_is_floored():
    task = make_task("zdt1")
    for first in (0.0, 1e-12, 1e-9):
        x = torch.full((task.n_var,), 0.5, dtype=torch.float64)
        x[0] = first
        _, jacobian = task.jacobian(x)
        assert torch.all(torch.isfinite(jacobian))
    x = torch.full((task.n_var,), 0.5, dtype=torch.float64)
    x[0] = 0.04  # above the floor: the analytic derivative of f2 in x1 is -sqrt(g / x1) / 2
    _, jacobian = task.jacobian(x)
    g = 1 + 9 * 0.5
    assert jacobian[1, 0].item() == pytest.approx(-math.sqrt(g / 0.04) / 2)


@pytest.mark.parametrize("name", ANALYTIC)
def test_gradients_are_finite_at_every_corner_of_the_box(name):
    task = make_task(name)
    lower, upper = task.lower(), task.upper()
    rng = np.random.default_rng(0)
    masks = [np.zeros(task.n_var, bool), np.ones(task.n_var, bool)]
    masks += [rng.uniform(size=task.n_var) < 0.5 for _ in range(6)]
    if task.n_var == 2:
        masks += [np.array([True, False]), np.array([False, True])]
    for mask in masks:
        corner = torch.where(torch.as_tensor(mask), upper, lower)
        values, jacobian = task.jacobian(corner)
        assert torch.all(torch.isfinite(values)) and torch.all(torch.isfinite(jacobian)), corner


@pytest.mark.parametrize("name", ANALYTIC)
def test_default_runs_reach_the_front_at_interior_preferences(name):
    """The default steps and learning rate bring linear scalarization onto the front."""
    task = make_task(name)
    m = task.space.n_objectives
    preferences = [[0.5, 0.5], [0.3, 0.7]] if m == 2 else [[1 / 3] * 3, [0.2, 0.3, 0.5]]
    front = task.space.normalize(task.pareto_front())
    for preference in preferences:
        for seed in (0, 1):
            final = np.asarray(task.run(make_algorithm("ls", preference), seed).objectives)
            if name == "dtlz2":
                gap = abs(np.linalg.norm(final) - 1)
            elif name == "zdt1":
                gap = abs(final[1] - (1 - math.sqrt(final[0])))
            elif name == "zdt2":
                gap = abs(final[1] - (1 - final[0] ** 2))
            else:
                gap = np.min(np.linalg.norm(front - task.space.normalize(final), axis=1))
            assert gap < 0.005, (preference, seed, final)


def test_front_hypervolumes_equal_their_closed_forms_by_hand():
    # r = 1.1: the box r^m less the region under the front (ZDT1 1/3, ZDT2 2/3, DTLZ2 pi/6)
    assert make_task("zdt1").front_hypervolume() == pytest.approx(1.21 - 1 / 3, abs=1e-15)
    assert make_task("zdt2").front_hypervolume() == pytest.approx(1.21 - 2 / 3, abs=1e-15)
    assert make_task("dtlz2").front_hypervolume() == pytest.approx(1.331 - math.pi / 6, abs=1e-15)
    assert make_task("dtlz2").front_hypervolume() == pytest.approx(0.8074012, abs=1e-7)
    assert make_task("zdt1").front_hypervolume(1.0) == pytest.approx(2 / 3)
    assert make_task("cagrad-toy").front_hypervolume() is None  # numerical front: no closed form


@pytest.mark.parametrize("name", ["zdt1", "zdt2", "fonseca", "dtlz2"])
def test_dense_samples_of_the_front_approach_the_closed_form_from_below(name):
    """A sample's hypervolume falls short of the whole front's, by less as it gets denser."""
    task = make_task(name)
    if name == "dtlz2":  # points of the unit sphere's octant on a fine angular grid
        a, b = np.meshgrid(np.linspace(0, np.pi / 2, 400), np.linspace(0, np.pi / 2, 400))
        dense = np.stack([np.cos(a) * np.cos(b), np.cos(a) * np.sin(b), np.sin(a)], -1)
        dense, tolerance = dense.reshape(-1, 3), 5e-3
    else:
        t = np.linspace(0, 1, 20001)
        if name == "fonseca":
            s, n = 1 / math.sqrt(3), 3
            t = -s + 2 * s * t
            dense = np.stack([1 - np.exp(-n * (t - s) ** 2), 1 - np.exp(-n * (t + s) ** 2)], 1)
        else:
            dense = np.stack([t, 1 - np.sqrt(t) if name == "zdt1" else 1 - t**2], 1)
        tolerance = 1e-4
    exact = task.front_hypervolume()
    sampled = hypervolume(task.space.normalize(task.pareto_front()))
    fine = hypervolume(task.space.normalize(dense))
    assert sampled < fine <= exact + 1e-12
    assert exact - fine < tolerance

"""Front quality on the analytic problems: measured, not assumed.

- MGDA-type rules (which ignore the preference) converge to the exact ZDT1 front: every final
  point is within a small distance (GD+) of it, whatever the starting point.
- Linear scalarization misses the non-convex part of the Fonseca-Fleming front (its points go to
  the two ends), while MGDA, GAPO and UPGrad end on the front's interior.
"""

from functools import cache

import numpy as np
import pytest
from pymoo.indicators.gd_plus import GDPlus

from moabench import make_task, simplex_lattice
from moabench.evaluation.metrics import igd_plus
from moabench.runs.runner import execute, resolve_config

SEEDS = (0, 1, 2)


@cache
def final_points(algorithm: str, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalised final points and their preferences over the standard grid and three seeds."""
    space = make_task(task).space
    points, preferences = [], []
    for seed in SEEDS:
        for preference in simplex_lattice(space.n_objectives):
            record = execute(resolve_config(algorithm, task, preference, seed))
            assert record.status == "ok", record.reason
            points.append(record.objectives)
            preferences.append(preference)
    return space.normalize(np.array(points)), np.array(preferences)


def normalised_front(task: str) -> np.ndarray:
    problem = make_task(task)
    return problem.space.normalize(problem.pareto_front())


@pytest.mark.parametrize("algorithm", ["mgda", "cagrad"])
def test_mgda_type_rules_reach_the_zdt1_front(algorithm):
    points, _ = final_points(algorithm, "zdt1")
    assert GDPlus(normalised_front("zdt1"))(points) < 5e-3


@pytest.mark.parametrize("algorithm", ["raco", "upgrad"])
def test_preference_rules_reach_the_zdt1_front_at_interior_preferences(algorithm):
    points, preferences = final_points(algorithm, "zdt1")
    interior = (preferences > 0).all(axis=1)
    assert GDPlus(normalised_front("zdt1"))(points[interior]) < 5e-3


def test_linear_scalarization_covers_the_convex_zdt1_front():
    points, _ = final_points("ls", "zdt1")
    assert igd_plus(points, normalised_front("zdt1")) < 0.1
    assert np.ptp(points[:, 0]) > 0.9  # from one end of the front to the other


def interior_points(algorithm: str) -> np.ndarray:
    points, _ = final_points(algorithm, "fonseca")
    return points[(points[:, 0] > 0.05) & (points[:, 0] < 0.95)]


def test_linear_scalarization_misses_the_non_convex_part_of_the_fonseca_front():
    points, _ = final_points("ls", "fonseca")
    assert GDPlus(normalised_front("fonseca"))(points) < 5e-3  # on the front ...
    assert len(interior_points("ls")) == 0  # ... but only at its two ends


@pytest.mark.parametrize("algorithm", ["mgda", "gapo", "upgrad"])
def test_gradient_rules_cover_the_non_convex_part_of_the_fonseca_front(algorithm):
    inside = interior_points(algorithm)
    assert len(inside) >= 10
    assert GDPlus(normalised_front("fonseca"))(inside) < 5e-3

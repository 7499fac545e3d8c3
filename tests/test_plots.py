import numpy as np
import pytest

from moabench.core.task import ObjectiveSpace
from moabench.evaluation.plots import plot_fronts

TWO = ObjectiveSpace(("f1", "f2"), (False, False), (0.0, 0.0), (1.0, 1.0))
THREE = ObjectiveSpace(("a", "b", "c"), (True, True, True), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))


def fronts(m: int, shift: float = 0.0):
    rng = np.random.default_rng(0)
    points = rng.uniform(size=(6, m)) + shift
    preferences = rng.dirichlet(np.ones(m), size=6)
    return {"ls": (points, preferences), "raco": (points[::-1], preferences)}


@pytest.mark.parametrize(("space", "m"), [(TWO, 2), (THREE, 3)])
def test_plots_are_pngs_and_byte_identical_for_the_same_input(tmp_path, space, m):
    front = np.eye(m)
    a = plot_fronts("t", space, fronts(m), front, tmp_path / "a.png").read_bytes()
    b = plot_fronts("t", space, fronts(m), front, tmp_path / "b.png").read_bytes()
    moved = plot_fronts("t", space, fronts(m, 0.3), front, tmp_path / "c.png").read_bytes()
    assert a.startswith(b"\x89PNG") and a == b and a != moved


def test_an_empty_mapping_draws_only_the_front(tmp_path):
    path = plot_fronts("empty", TWO, {}, np.array([[0.0, 1.0], [1.0, 0.0]]), tmp_path / "e.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_four_objectives_are_refused_clearly(tmp_path):
    space = ObjectiveSpace(tuple("abcd"), (False,) * 4, (0.0,) * 4, (1.0,) * 4)
    with pytest.raises(ValueError, match="2 or 3 objectives, not 4"):
        plot_fronts("t", space, {}, None, tmp_path / "x.png")

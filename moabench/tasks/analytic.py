"""Analytic test problems with known Pareto fronts, in torch float64 (all objectives minimised).

ZDT1, ZDT2 and DTLZ2 follow pymoo's definitions (`pymoo.problems.get_problem(name).evaluate`,
checked in the tests) and use pymoo's `pareto_front()`; Fonseca-Fleming's front is analytic; the
CAGrad toy's front is numerical (a dense grid filtered to its non-dominated points).

Every problem's `evaluate` is batched over leading dimensions and has finite gradients everywhere
in its box (see `ZDT_SQRT_FLOOR` and `CAGRAD_TOY_LOG_FLOOR`). Defaults of 100 steps keep one run
at a few tens of milliseconds, so the whole analytic suite runs in under a minute on 2 cores.

torch, pymoo and moocore are imported where they are used: registering the tasks (`moabench list`)
imports none of them.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import Field

from moabench.analytic import AnalyticParams, AnalyticProblem
from moabench.core.task import HV_REFERENCE, ObjectiveSpace, register_task

if TYPE_CHECKING:
    import torch

#: Floor of f1/g inside ZDT1's square root: d sqrt(r)/dr = 1/(2 sqrt(r)) is infinite at r = 0
#: (x1 = 0, the front's end point), so r is clamped to 1e-8 there (f2 off by at most 1e-4 g).
ZDT_SQRT_FLOOR = 1e-8
#: Floor of |.| inside the CAGrad toy's logarithms, as in the paper's code (LOWER = 0.000005).
CAGRAD_TOY_LOG_FLOOR = 5e-6
#: Points of the sampled reference fronts.
FRONT_POINTS = 500


def _box(n_var: int, low: float, high: float) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    return (
        torch.full((n_var,), low, dtype=torch.float64),
        torch.full((n_var,), high, dtype=torch.float64),
    )


def _arc_length_sample(front: np.ndarray, n_points: int) -> np.ndarray:
    """About `n_points` points of a 2-D front (sorted by f1), evenly spaced along its arc length;
    every returned point is one of `front`'s, so the sample stays non-dominated."""
    front = front[np.argsort(front[:, 0], kind="stable")]
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(front, axis=0), axis=1))])
    picks = np.searchsorted(arc, np.linspace(0.0, arc[-1], n_points))
    return front[np.unique(np.clip(picks, 0, len(front) - 1))]


def box_minus_below(reference: float, m: int, below: float) -> float:
    """Exact hypervolume of a front whose normalised image lies in [0, 1]^m and joins the box's
    faces (ideal 0, nadir 1): the box [0, r]^m less the `below` volume of [0, 1]^m that no front
    point dominates, r^m - below (r >= 1: every point of [0, r]^m outside that region is
    dominated)."""
    if reference < 1:
        raise ValueError(f"the closed form needs a reference point >= 1 (the nadir): {reference}")
    return reference**m - below


class ZDTParams(AnalyticParams):
    steps: int = Field(100, ge=1, description="gradient steps per run")
    learning_rate: float = Field(0.2, gt=0, description="step size of the projected descent")


class _ZDT(AnalyticProblem):
    """ZDT (Zitzler, Deb & Thiele 2000) with pymoo's default n = 30 variables in [0, 1].

    f1 = x1, g = 1 + 9 sum_{i>=2} x_i / (n - 1), f2 = g h(f1, g); the Pareto set is x_2.. = 0
    (g = 1), so the front is f2 = h(f1, 1), f1 in [0, 1]: ideal (0, 0), nadir (1, 1).
    """

    n_var: ClassVar[int] = 30
    Params = ZDTParams
    space = ObjectiveSpace(
        names=("f1", "f2"), maximize=(False, False), ideal=(0.0, 0.0), nadir=(1.0, 1.0)
    )

    def lower(self) -> torch.Tensor:
        return _box(self.n_var, 0.0, 1.0)[0]

    def upper(self) -> torch.Tensor:
        return _box(self.n_var, 0.0, 1.0)[1]

    def _f1_and_g(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[..., 0], 1 + 9 * x[..., 1:].sum(dim=-1) / (self.n_var - 1)

    #: The area under the front f2 = h(f1) on [0, 1], integral_0^1 h(f1) df1.
    area_below_front: ClassVar[float]

    def pareto_front(self) -> np.ndarray:
        """pymoo's front: f1 evenly spaced on [0, 1] (`FRONT_POINTS` points)."""
        from pymoo.problems import get_problem

        problem = get_problem(self.name, n_var=self.n_var)
        return problem.pareto_front(n_pareto_points=FRONT_POINTS)

    def front_hypervolume(self, reference: float = HV_REFERENCE) -> float:
        """r^2 - integral_0^1 h(f1) df1 (`box_minus_below`)."""
        return box_minus_below(reference, 2, self.area_below_front)


@register_task("zdt1")
class ZDT1(_ZDT):
    """ZDT1: two objectives, convex front f2 = 1 - sqrt(f1), n = 30 (Zitzler et al. 2000; pymoo).

    f2 = g (1 - sqrt(f1 / g)). The ratio f1/g is floored at `ZDT_SQRT_FLOOR` = 1e-8 inside the
    square root so that the gradient stays finite at x1 = 0 (where f2 reads g (1 - 1e-4)).
    The area under the front: integral_0^1 (1 - sqrt(f1)) df1 = 1 - 2/3 = 1/3.
    """

    area_below_front = 1 / 3

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        f1, g = self._f1_and_g(x)
        ratio = torch.clamp(f1 / g, min=ZDT_SQRT_FLOOR)  # finite gradient at f1 = 0
        return torch.stack([f1, g * (1 - torch.sqrt(ratio))], dim=-1)


@register_task("zdt2")
class ZDT2(_ZDT):
    """ZDT2: two objectives, non-convex front f2 = 1 - f1^2, n = 30 (Zitzler et al. 2000; pymoo).

    f2 = g (1 - (f1 / g)^2), smooth everywhere in [0, 1]^n. The area under the front:
    integral_0^1 (1 - f1^2) df1 = 2/3.
    """

    area_below_front = 2 / 3

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        f1, g = self._f1_and_g(x)
        return torch.stack([f1, g * (1 - (f1 / g) ** 2)], dim=-1)


class FonsecaParams(AnalyticParams):
    steps: int = Field(100, ge=1, description="gradient steps per run")
    learning_rate: float = Field(0.1, gt=0, description="step size of the projected descent")


@register_task("fonseca")
class FonsecaFleming(AnalyticProblem):
    """Fonseca-Fleming: two objectives, non-convex front, n = 3 in [-4, 4] (Fonseca & Fleming 1995).

    f1,2 = 1 - exp(-sum_i (x_i -+ 1/sqrt(n))^2). The Pareto set is x_1 = ... = x_n = t for
    t in [-1/sqrt(n), 1/sqrt(n)], so the front is analytic: ideal (0, 0), nadir
    (1 - e^-4, 1 - e^-4). The objectives are flat (gradients ~e^-16) far from the origin, so
    starting points are drawn from [-1, 1]^n, where gradients inform; the box stays [-4, 4]^n.
    """

    n_var: ClassVar[int] = 3
    Params = FonsecaParams
    space = ObjectiveSpace(
        names=("f1", "f2"), maximize=(False, False), ideal=(0.0, 0.0),
        nadir=(1 - math.exp(-4), 1 - math.exp(-4)),
    )  # fmt: skip

    def lower(self) -> torch.Tensor:
        return _box(self.n_var, -4.0, 4.0)[0]

    def upper(self) -> torch.Tensor:
        return _box(self.n_var, -4.0, 4.0)[1]

    def initial_point(self, generator: torch.Generator) -> torch.Tensor:
        import torch

        return 2 * torch.rand(self.n_var, generator=generator, dtype=torch.float64) - 1

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        shift = 1 / math.sqrt(self.n_var)
        return torch.stack(
            [
                1 - torch.exp(-((x - shift) ** 2).sum(dim=-1)),
                1 - torch.exp(-((x + shift) ** 2).sum(dim=-1)),
            ],
            dim=-1,
        )

    def pareto_front(self) -> np.ndarray:
        """The image of x = (t, ..., t), t on a uniform grid of [-1/sqrt(n), 1/sqrt(n)]."""
        n, shift = self.n_var, 1 / math.sqrt(self.n_var)
        t = np.linspace(-shift, shift, FRONT_POINTS)
        return np.stack(
            [1 - np.exp(-n * (t - shift) ** 2), 1 - np.exp(-n * (t + shift) ** 2)], axis=1
        )

    def front_hypervolume(self, reference: float = HV_REFERENCE) -> float:
        """r^2 less the area under the normalised front, integral f2 d(f1) along t from
        1/sqrt(n) down to -1/sqrt(n) (f1 grows as t falls), by adaptive quadrature (scipy's
        quad, error about 1e-14)."""
        from scipy.integrate import quad

        n, shift, nadir = self.n_var, 1 / math.sqrt(self.n_var), self.space.nadir[0]

        def f2_df1(t: float) -> float:  # f2(t) * -df1/dt, both normalised by the nadir
            f2 = 1 - math.exp(-n * (t + shift) ** 2)
            return f2 * -2 * n * (t - shift) * math.exp(-n * (t - shift) ** 2) / nadir**2

        area = quad(f2_df1, -shift, shift, epsabs=1e-13, epsrel=1e-13)[0]
        return box_minus_below(reference, 2, area)


class ToyParams(AnalyticParams):
    steps: int = Field(100, ge=1, description="gradient steps per run")
    learning_rate: float = Field(0.3, gt=0, description="step size of the projected descent")


# The two objectives share their structure; these constants hold the per-objective parts
# (last axis: objective 1, objective 2), so one pass of elementwise ops computes both.
_TOY_LOG_SHIFT = (-7.0, 3.0)  # 0.5 (-x1 - 7), 0.5 (-x1 + 3)
_TOY_LOG_TANH = (-1.0, 1.0)  # -+ tanh(-x2)
_TOY_LOG_OFFSET = (0.0, 2.0)  # + 0, + 2
_TOY_SQ_CENTRE = (7.0, -7.0)  # (-x1 + 7)^2, (-x1 - 7)^2


def cagrad_toy_objectives(x: torch.Tensor) -> torch.Tensor:
    """The CAGrad toy's two objectives (Liu et al. 2021, Sec. 5.1 and its toy.py), shape (..., 2).

    With u = tanh(x2 / 2):
      f1 = max(u, 0) (log max(|0.5 (-x1 - 7) - tanh(-x2)|, 5e-6) + 6)
           + max(-u, 0) (((-x1 + 7)^2 + 0.1 (-x2 - 8)^2) / 10 - 20)
      f2 = max(u, 0) (log max(|0.5 (-x1 + 3) + tanh(-x2) + 2|, 5e-6) + 6)
           + max(-u, 0) (((-x1 - 7)^2 + 0.1 (-x2 - 8)^2) / 10 - 20)
    """
    import torch

    log_shift, log_tanh, log_offset, sq_centre = (
        torch.tensor(c, dtype=torch.float64)
        for c in (_TOY_LOG_SHIFT, _TOY_LOG_TANH, _TOY_LOG_OFFSET, _TOY_SQ_CENTRE)
    )
    x1, x2 = x[..., :1], x[..., 1:]
    inner = 0.5 * (log_shift - x1) + log_tanh * torch.tanh(-x2) + log_offset
    logs = torch.clamp(inner.abs(), min=CAGRAD_TOY_LOG_FLOOR).log() + 6
    squares = ((sq_centre - x1) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    gate = torch.tanh(0.5 * x2)
    return logs * gate.clamp(min=0) + squares * (-gate).clamp(min=0)


#: The region of the grid behind the toy's numerical front: the Pareto set lies in
#: x1 in [-7, 7], x2 in about [-8.44, -8.01] (the paper: near the segment x2 = -8.3552);
#: `tests/test_analytic_tasks.py` checks that no point of a grid over the whole box dominates it.
CAGRAD_TOY_FRONT_GRID = ((-7.0, 7.0, 1401), (-8.5, -7.95, 276))


@lru_cache(maxsize=1)
def cagrad_toy_front() -> np.ndarray:
    """The CAGrad toy's numerical front: the non-dominated points of a 1401 x 276 grid over the
    region of its Pareto set (x1 step 0.01, x2 step 0.002), thinned to `FRONT_POINTS` points
    evenly spaced along the front (neighbours about 0.07 apart in raw units). Against a grid 6x
    finer in x1 and 8x in x2, no point is dominated by more than 1e-3 (raw units). Cached:
    computed once per process (about 0.2 s)."""
    import moocore
    import torch

    (a1, b1, n1), (a2, b2, n2) = CAGRAD_TOY_FRONT_GRID
    x1, x2 = torch.meshgrid(
        torch.linspace(a1, b1, n1, dtype=torch.float64),
        torch.linspace(a2, b2, n2, dtype=torch.float64),
        indexing="ij",
    )
    points = cagrad_toy_objectives(torch.stack([x1.reshape(-1), x2.reshape(-1)], dim=-1)).numpy()
    front = np.unique(points[moocore.is_nondominated(points)], axis=0)
    return _arc_length_sample(front, FRONT_POINTS)


@register_task("cagrad-toy")
class CAGradToy(AnalyticProblem):
    """CAGrad toy: two conflicting, curved objectives on [-10, 10]^2 (Liu et al., NeurIPS 2021).

    "Conflict-Averse Gradient Descent for Multi-task Learning", arXiv 2110.14048, Sec. 5.1; the
    formulas are those of the paper's code (github.com/Cranial-XIX/CAGrad, toy.py), see
    `cagrad_toy_objectives`. Its front has no closed form: `pareto_front()` is numerical
    (`cagrad_toy_front`). The normalisation is rounded to ideal (-20, -20), nadir (0, 0); the
    front spans about [-19.99, -0.40] in each objective. The paper runs Adam at lr 0.001 for
    100k steps; here projected gradient descent at lr 0.3 for 100 steps reaches the front.
    """

    n_var: ClassVar[int] = 2
    Params = ToyParams
    space = ObjectiveSpace(
        names=("f1", "f2"), maximize=(False, False), ideal=(-20.0, -20.0), nadir=(0.0, 0.0)
    )

    def lower(self) -> torch.Tensor:
        return _box(self.n_var, -10.0, 10.0)[0]

    def upper(self) -> torch.Tensor:
        return _box(self.n_var, -10.0, 10.0)[1]

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        return cagrad_toy_objectives(x)

    def pareto_front(self) -> np.ndarray:
        """Numerical: a fine grid's non-dominated points, thinned evenly along the front."""
        return cagrad_toy_front()


class DTLZParams(AnalyticParams):
    steps: int = Field(100, ge=1, description="gradient steps per run")
    learning_rate: float = Field(0.1, gt=0, description="step size of the projected descent")


@register_task("dtlz2")
class DTLZ2(AnalyticProblem):
    """DTLZ2: three objectives, spherical front sum f_i^2 = 1, n = 12 (Deb et al. 2005; pymoo).

    g = sum_{i>=3} (x_i - 0.5)^2 (k = 10 distance variables), f = (1 + g) (cos a cos b,
    cos a sin b, sin a) with a = x1 pi/2, b = x2 pi/2; the Pareto set is x_3.. = 0.5, the front
    the unit sphere's positive octant: ideal (0, 0, 0), nadir (1, 1, 1). No point of the box
    is dominated by the front inside the unit ball, so the front's hypervolume is r^3 - pi/6
    (`front_hypervolume`): 0.8074 at r = 1.1.
    """

    n_var: ClassVar[int] = 12
    Params = DTLZParams
    space = ObjectiveSpace(
        names=("f1", "f2", "f3"), maximize=(False,) * 3, ideal=(0.0,) * 3, nadir=(1.0,) * 3
    )

    def lower(self) -> torch.Tensor:
        return _box(self.n_var, 0.0, 1.0)[0]

    def upper(self) -> torch.Tensor:
        return _box(self.n_var, 0.0, 1.0)[1]

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        g = ((x[..., 2:] - 0.5) ** 2).sum(dim=-1, keepdim=True)
        a, b = x[..., 0] * math.pi / 2, x[..., 1] * math.pi / 2
        angles = [torch.cos(a) * torch.cos(b), torch.cos(a) * torch.sin(b), torch.sin(a)]
        return (1 + g) * torch.stack(angles, dim=-1)

    def pareto_front(self) -> np.ndarray:
        """pymoo's front on the Das-Dennis directions with 24 partitions (325 points)."""
        from pymoo.problems import get_problem
        from pymoo.util.ref_dirs import get_reference_directions

        directions = get_reference_directions("das-dennis", 3, n_partitions=24)
        return get_problem("dtlz2", n_var=self.n_var, n_obj=3).pareto_front(directions)

    def front_hypervolume(self, reference: float = HV_REFERENCE) -> float:
        """r^3 - pi/6: the box less the unit ball's positive octant (a point x >= 0 is dominated
        by the front exactly when |x| >= 1, by x / |x|)."""
        return box_minus_below(reference, 3, math.pi / 6)

"""Analytic test problems with exact Pareto fronts, written in torch (all objectives minimised).

The formulas follow pymoo's definitions (checked against `pymoo.problems.get_problem(...).evaluate`
in the tests) and pymoo's `pareto_front()` where pymoo has the problem.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import ClassVar

import moocore
import numpy as np
import torch
from pydantic import Field
from pymoo.problems import get_problem
from pymoo.util.ref_dirs import get_reference_directions

from moabench.analytic import AnalyticParams, AnalyticProblem
from moabench.task import ObjectiveSpace, register_task

#: Floor of f1/g inside ZDT1's square root, whose gradient is infinite at 0.
ZDT_SQRT_FLOOR = 1e-8


def _box(n_var: int, low: float, high: float) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.full((n_var,), low, dtype=torch.float64),
        torch.full((n_var,), high, dtype=torch.float64),
    )


class ZDTParams(AnalyticParams):
    steps: int = Field(100, ge=1, description="gradient steps per run")
    learning_rate: float = Field(0.2, gt=0, description="step size of the projected descent")


class _ZDT(AnalyticProblem):
    """ZDT (Zitzler, Deb & Thiele 2000) with n = 30 variables in [0, 1]."""

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

    def pareto_front(self) -> np.ndarray:
        return get_problem(self.name, n_var=self.n_var).pareto_front(n_pareto_points=500)


@register_task("zdt1")
class ZDT1(_ZDT):
    """ZDT1: two objectives, convex front f2 = 1 - sqrt(f1) (Zitzler et al. 2000)."""

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        f1, g = self._f1_and_g(x)
        ratio = torch.clamp(f1 / g, min=ZDT_SQRT_FLOOR)  # finite gradient at f1 = 0
        return torch.stack([f1, g * (1 - torch.sqrt(ratio))], dim=-1)


@register_task("zdt2")
class ZDT2(_ZDT):
    """ZDT2: two objectives, non-convex front f2 = 1 - f1^2 (Zitzler et al. 2000)."""

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        f1, g = self._f1_and_g(x)
        return torch.stack([f1, g * (1 - (f1 / g) ** 2)], dim=-1)


class FonsecaParams(AnalyticParams):
    steps: int = Field(100, ge=1, description="gradient steps per run")
    learning_rate: float = Field(0.1, gt=0, description="step size of the projected descent")


@register_task("fonseca")
class FonsecaFleming(AnalyticProblem):
    """Fonseca-Fleming: two objectives, non-convex front (Fonseca & Fleming 1995), n = 3.

    f1,2 = 1 - exp(-sum_i (x_i -+ 1/sqrt(n))^2) on [-4, 4]^n; the Pareto set is
    x_1 = ... = x_n = t, t in [-1/sqrt(n), 1/sqrt(n)]. The objectives are flat (gradients ~e^-16)
    far from the origin, so starting points are drawn from [-1, 1]^n, where gradients inform.
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
        return 2 * torch.rand(self.n_var, generator=generator, dtype=torch.float64) - 1

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        shift = 1 / math.sqrt(self.n_var)
        return torch.stack(
            [
                1 - torch.exp(-((x - shift) ** 2).sum(dim=-1)),
                1 - torch.exp(-((x + shift) ** 2).sum(dim=-1)),
            ],
            dim=-1,
        )

    def pareto_front(self) -> np.ndarray:
        n, shift = self.n_var, 1 / math.sqrt(self.n_var)
        t = np.linspace(-shift, shift, 500)
        return np.stack(
            [1 - np.exp(-n * (t - shift) ** 2), 1 - np.exp(-n * (t + shift) ** 2)], axis=1
        )


class ToyParams(AnalyticParams):
    steps: int = Field(100, ge=1, description="gradient steps per run")
    learning_rate: float = Field(0.3, gt=0, description="step size of the projected descent")


def cagrad_toy_objectives(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """The two objectives of the CAGrad toy (Liu et al. 2021, Sec. 5.1), elementwise in x1, x2."""
    floor = 5e-6
    f1_log = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), floor).log() + 6
    f2_log = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), floor).log() + 6
    f1_sq = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    f2_sq = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    upper, lower = torch.clamp(torch.tanh(x2 * 0.5), 0), torch.clamp(torch.tanh(-x2 * 0.5), 0)
    return torch.stack([f1_log * upper + f1_sq * lower, f2_log * upper + f2_sq * lower], dim=-1)


@lru_cache(maxsize=1)
def _cagrad_toy_front() -> np.ndarray:
    """Numerical front: the non-dominated points of a dense grid over the Pareto set's region
    (x1 in [-7, 7], x2 in [-10, -6]; the paper's optimum is the segment x2 = -8.3552)."""
    x1, x2 = torch.meshgrid(
        torch.linspace(-7, 7, 1401, dtype=torch.float64),
        torch.linspace(-10, -6, 801, dtype=torch.float64),
        indexing="ij",
    )
    points = cagrad_toy_objectives(x1.reshape(-1), x2.reshape(-1)).numpy()
    front = points[moocore.is_nondominated(points)]
    front = front[np.argsort(front[:, 0])]
    return front[:: max(1, len(front) // 500)]


@register_task("cagrad-toy")
class CAGradToy(AnalyticProblem):
    """The CAGrad paper's 2-D toy (Liu et al. 2021): conflicting, curved objectives on [-10, 10]^2.

    Its Pareto set is near the segment x2 = -8.3552, x1 in [-7, 7]; the front is computed
    numerically from a dense grid (`_cagrad_toy_front`).
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
        return cagrad_toy_objectives(x[..., 0], x[..., 1])

    def pareto_front(self) -> np.ndarray:
        return _cagrad_toy_front()


class DTLZParams(AnalyticParams):
    steps: int = Field(100, ge=1, description="gradient steps per run")
    learning_rate: float = Field(0.1, gt=0, description="step size of the projected descent")


@register_task("dtlz2")
class DTLZ2(AnalyticProblem):
    """DTLZ2: three objectives, spherical front sum f_i^2 = 1 (Deb et al. 2005), n = 12."""

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
        g = ((x[..., 2:] - 0.5) ** 2).sum(dim=-1, keepdim=True)
        a, b = x[..., 0] * math.pi / 2, x[..., 1] * math.pi / 2
        angles = [torch.cos(a) * torch.cos(b), torch.cos(a) * torch.sin(b), torch.sin(a)]
        return (1 + g) * torch.stack(angles, dim=-1)

    def pareto_front(self) -> np.ndarray:
        directions = get_reference_directions("das-dennis", 3, n_partitions=24)
        return get_problem("dtlz2", n_var=self.n_var, n_obj=3).pareto_front(directions)

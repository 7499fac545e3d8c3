"""Analytic test problems: differentiable objectives in torch with known Pareto fronts.

The training loop is projected gradient descent: from a seeded starting point, `steps` updates
x <- clip(x - lr * sum_i a_i grad f_i(x), lower, upper), the coefficients a from the algorithm.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import Field

from moabench.algorithm import Algorithm, GramRule, Paradigm
from moabench.gradients import combine
from moabench.task import DivergedError, RunOutput, Task, TaskParams

#: Number of trajectory points recorded per run (plus the starting point).
TRAJECTORY_POINTS = 20


class AnalyticParams(TaskParams):
    steps: int = Field(200, ge=1, description="gradient steps per run")
    learning_rate: float = Field(0.01, gt=0, description="step size of the projected descent")


class AnalyticProblem(Task):
    """Base of the analytic problems; subclasses define `evaluate`, bounds and the objective space."""

    paradigm: ClassVar[Paradigm] = Paradigm.ANALYTIC
    Params: ClassVar[type[TaskParams]] = AnalyticParams
    n_var: ClassVar[int]

    def lower(self) -> torch.Tensor:
        raise NotImplementedError

    def upper(self) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """The objective vector f(x), shape (m,), all minimised."""
        raise NotImplementedError

    def initial_point(self, generator: torch.Generator) -> torch.Tensor:
        """A uniformly random point of the box, drawn from `generator`."""
        lower, upper = self.lower(), self.upper()
        u = torch.rand(self.n_var, generator=generator, dtype=torch.float64)
        return lower + u * (upper - lower)

    def run(self, algorithm: Algorithm, seed: int) -> RunOutput:
        if not isinstance(algorithm, GramRule):
            raise TypeError(f"{algorithm.name} is not a gradient combination rule")
        steps, learning_rate = self.params.steps, self.params.learning_rate
        generator = torch.Generator().manual_seed(seed)
        x = self.initial_point(generator).requires_grad_(True)
        lower, upper = self.lower(), self.upper()
        record_every = max(1, steps // TRAJECTORY_POINTS)
        output = RunOutput(objectives=[])
        gradient_evaluations_per_step = self.space.n_objectives if algorithm.needs_gram else 1

        for step in range(steps + 1):
            objectives = self.evaluate(x)
            if step % record_every == 0 or step == steps:
                output.trajectory.append(objectives.detach().tolist())
                output.trajectory_steps.append(step)
                weights = algorithm.weight_trajectory_point()
                if weights is not None:
                    output.weight_trajectory.append(weights)
            if step == steps:
                break
            try:
                combine(objectives, [x], algorithm, learning_rate)
            except DivergedError as error:
                raise DivergedError(f"step {step}: {error}") from None
            with torch.no_grad():
                x -= learning_rate * x.grad
                x.copy_(torch.maximum(torch.minimum(x, upper), lower))
            x.grad = None

        output.objectives = output.trajectory[-1]
        if not np.all(np.isfinite(output.objectives)):
            raise DivergedError(f"step {steps}: non-finite objectives {output.objectives}")
        output.steps = steps
        output.gradient_evaluations = steps * gradient_evaluations_per_step
        return output

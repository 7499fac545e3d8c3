"""Analytic test problems: differentiable objectives in torch with known Pareto fronts.

The training loop is projected gradient descent: from a seeded starting point, `steps` updates
x <- clip(x - lr * sum_i a_i grad f_i(x), lower, upper), the coefficients a from the algorithm.
Each trajectory point is reported as progress (`moabench.core.progress`).
torch is imported where it is used: registering the problems (`moabench list`) does not import it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from moabench.core.algorithm import Algorithm, GramRule, Paradigm
from moabench.core.progress import report
from moabench.core.task import DivergedError, RunOutput, Task, TaskParams

if TYPE_CHECKING:
    import torch

#: Most trajectory points recorded along a run (from step 0), plus the final point.
TRAJECTORY_POINTS = 20


class AnalyticParams(TaskParams):
    steps: int = Field(200, ge=1, description="gradient steps per run")
    learning_rate: float = Field(0.01, gt=0, description="step size of the projected descent")


class AnalyticProblem(Task):
    """Base of the analytic problems; subclasses define `evaluate`, bounds and the objective space."""

    paradigms: ClassVar[tuple[Paradigm, ...]] = (Paradigm.ANALYTIC,)
    Params: ClassVar[type[TaskParams]] = AnalyticParams
    n_var: ClassVar[int]

    def lower(self) -> torch.Tensor:
        raise NotImplementedError

    def upper(self) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """The objective vectors f(x), shape (..., m) for x of shape (..., n_var), all minimised."""
        raise NotImplementedError

    def initial_point(self, generator: torch.Generator) -> torch.Tensor:
        """A uniformly random point of the box, drawn from `generator`."""
        import torch

        lower, upper = self.lower(), self.upper()
        u = torch.rand(self.n_var, generator=generator, dtype=torch.float64)
        return lower + u * (upper - lower)

    def jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f(x) and its (m, n_var) Jacobian in one backward pass: row i of a batch of m copies of
        x only feeds f_i, so the gradient of sum_i f_i(copy_i) w.r.t. the batch is the Jacobian."""
        import torch

        m = self.space.n_objectives
        copies = x.detach().expand(m, -1).clone().requires_grad_(True)
        values = self.evaluate(copies)
        (jacobian,) = torch.autograd.grad(values.diagonal().sum(), copies)
        return values[0].detach(), jacobian

    def direction(
        self, x: torch.Tensor, algorithm: GramRule, learning_rate: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """f(x) and the algorithm's descent direction at x."""
        from moabench.core.gradients import check_finite_losses, combine, rule_direction

        if algorithm.needs_gram:
            objectives, jacobian = self.jacobian(x)
            check_finite_losses(objectives)
            return objectives, rule_direction(jacobian, algorithm, learning_rate)[1]
        x = x.detach().requires_grad_(True)
        objectives = self.evaluate(x)
        combine(objectives, [x], algorithm, learning_rate)
        return objectives.detach(), x.grad

    def run(self, algorithm: Algorithm, seed: int) -> RunOutput:
        import torch

        from moabench.core.gradients import check_finite_losses

        if not isinstance(algorithm, GramRule):
            raise TypeError(f"{algorithm.name} is not a gradient combination rule")
        steps, learning_rate = self.params.steps, self.params.learning_rate
        x = self.initial_point(torch.Generator().manual_seed(seed))
        lower, upper = self.lower(), self.upper()
        record_every = math.ceil(steps / TRAJECTORY_POINTS)
        output = RunOutput(objectives=[])

        def record(step: int, objectives: torch.Tensor) -> None:
            output.trajectory.append(objectives.tolist())
            output.trajectory_steps.append(step)
            report(step, steps, output.trajectory[-1])
            weights = algorithm.weight_trajectory_point()
            if weights is not None:
                output.weight_trajectory.append(weights)

        for step in range(steps):
            try:
                objectives, direction = self.direction(x, algorithm, learning_rate)
            except DivergedError as error:
                raise DivergedError(f"step {step}: {error}") from None
            if step % record_every == 0:
                record(step, objectives)
            x = (x.detach() - learning_rate * direction).clamp_(lower, upper)
        final = self.evaluate(x).detach()
        record(steps, final)
        try:
            check_finite_losses(final)
        except DivergedError as error:
            raise DivergedError(f"step {steps}: {error}") from None

        output.objectives = final.tolist()
        output.steps = steps
        gradients_per_step = self.space.n_objectives if algorithm.needs_gram else 1
        output.gradient_evaluations = steps * gradients_per_step
        return output

"""The task interface and its registry.

A task owns its objectives (names, which are maximised), its fixed normalisation (ideal and nadir
points, recorded with every result so that hypervolumes are comparable), its reference Pareto front
where one is known, and the training loop of its paradigm: `run(algorithm, seed)` returns the final
objective vector and a trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from moabench.core.algorithm import Algorithm, Paradigm, SteerableMethod
from moabench.core.errors import ConfigError, validate_params
from moabench.core.registry import Registrable, Registry

#: Hypervolume reference point in the normalised minimisation space (ideal = 0, nadir = 1).
HV_REFERENCE = 1.1


@dataclass(frozen=True)
class ObjectiveSpace:
    """Objective names, their senses and the task-fixed normalisation, in raw (task) units.

    This is the one place that knows which objectives are maximised: `normalize` maps raw objective
    vectors to a minimisation space where the ideal point is 0 and the nadir point is 1.
    """

    names: tuple[str, ...]
    maximize: tuple[bool, ...]
    ideal: tuple[float, ...]
    nadir: tuple[float, ...]

    def __post_init__(self) -> None:
        m = len(self.names)
        if not (len(self.maximize) == len(self.ideal) == len(self.nadir) == m):
            raise ValueError("names, maximize, ideal and nadir must have one entry per objective")
        for name, up, ideal, nadir in zip(self.names, self.maximize, self.ideal, self.nadir):
            if (ideal <= nadir) if up else (ideal >= nadir):
                better = "above" if up else "below"
                raise ValueError(
                    f"objective {name!r} is {'maximised' if up else 'minimised'}: its ideal "
                    f"{ideal} must lie {better} its nadir {nadir}"
                )

    @property
    def n_objectives(self) -> int:
        return len(self.names)

    def normalize(self, objectives: np.ndarray) -> np.ndarray:
        """Raw objective vectors (..., m) -> normalised minimisation space (ideal 0, nadir 1)."""
        raw = np.asarray(objectives, dtype=np.float64)
        ideal, nadir = np.asarray(self.ideal), np.asarray(self.nadir)
        return (raw - ideal) / (nadir - ideal)

    def to_record(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "maximize": list(self.maximize),
            "ideal": list(self.ideal),
            "nadir": list(self.nadir),
            "hv_reference": HV_REFERENCE,
        }


@dataclass
class RunOutput:
    """What one training run produces, in raw objective units."""

    objectives: list[float]
    #: Objective vectors along training (the first is the starting point), at `trajectory_steps`.
    trajectory: list[list[float]] = field(default_factory=list)
    trajectory_steps: list[int] = field(default_factory=list)
    #: The algorithm's internal weights along training, for algorithms whose weights move.
    weight_trajectory: list[list[float]] = field(default_factory=list)
    steps: int = 0
    gradient_evaluations: int = 0
    #: lm-eval scores of the trained policy ("<task>/<metric>"), where capability tasks were asked
    capabilities: dict[str, float] = field(default_factory=dict)
    #: The trained policy, for the steerable methods that reuse it as an expert (never recorded).
    policy: Any = None


class DivergedError(RuntimeError):
    """A run whose objectives or gradients became NaN or infinite."""


class Task(Registrable):
    """Base class of every registered task; subclasses set the class attributes and `run`."""

    #: The training settings the task offers; the first is its default.
    paradigms: ClassVar[tuple[Paradigm, ...]]
    Params: ClassVar[type[BaseModel]]
    #: Seeds 0..n-1 of the standard suite per paradigm (or one count for every paradigm): the
    #: counts at which the leaderboard's sign-flip test detects a 5% HV difference between top
    #: methods with 80% power (README, "Seeds from a power analysis"; `evaluation.power`);
    #: analytic re-estimated at its first 34 seeds (38), the language ones at theirs (they stand).
    standard_seeds: ClassVar[int | dict[str, int]] = {
        "analytic": 38, "preference": 19, "online": 23,
    }  # fmt: skip

    def __init__(self, **params: Any) -> None:
        self.params = validate_params(self.Params, params, f"task {self.name!r}")

    @classmethod
    def seeds(cls, paradigm: Paradigm) -> list[int]:
        """The standard suite's seeds for training in `paradigm`."""
        count = cls.standard_seeds
        if not isinstance(count, int):
            if paradigm.value not in count:
                raise ConfigError(
                    f"task {cls.name!r}: standard_seeds gives no count for {paradigm.value} "
                    f"training (it gives: {', '.join(sorted(count)) or 'none'})"
                )
            count = count[paradigm.value]
        return list(range(count))

    @property
    def paradigm(self) -> Paradigm:
        """The paradigm of this configuration (the `paradigm` parameter where a task has one)."""
        chosen = getattr(self.params, "paradigm", None)
        return Paradigm(chosen) if chosen is not None else self.paradigms[0]

    @property
    def space(self) -> ObjectiveSpace:
        raise NotImplementedError

    @property
    def space_is_fixed(self) -> bool:
        """Whether `space` is known before a run (False where a run measures its normalisation)."""
        return True

    @property
    def skipped_rows(self) -> dict[str, dict[str, int]]:
        """Rows of the task's datasets that its last run skipped for a known quirk,
        {source: {quirk: rows}}, which the run's record keeps; {} for a task without datasets."""
        return {}

    def pareto_front(self) -> np.ndarray | None:
        """The exact (or numerically exact) Pareto front in raw units, or None when unknown."""
        return None

    def front_hypervolume(self, reference: float = HV_REFERENCE) -> float | None:
        """The exact hypervolume of the whole Pareto front in the normalised minimisation space
        w.r.t. (reference, ..., reference), from a closed form; None where there is none (the
        leaderboard then takes the HV of the sampled `pareto_front`, which falls short of it)."""
        return None

    def run(self, algorithm: Algorithm, seed: int) -> RunOutput:
        raise NotImplementedError

    # --- steerable methods (`SteerableMethod`): tasks whose trained policies can be kept --------
    def save_policy(self, policy: Any, path: Path) -> None:
        """Write a trained policy (`RunOutput.policy`) into the folder `path`."""
        raise NotImplementedError(f"task {self.name!r} does not keep trained policies")

    def load_policy(self, path: Path) -> Any:
        """The policy that `save_policy` wrote into `path`."""
        raise NotImplementedError(f"task {self.name!r} does not keep trained policies")

    def train_steerable(self, method: SteerableMethod, seed: int) -> RunOutput:
        """Train the one preference-conditioned policy of `method` (combines "conditioning");
        the output's `policy` is it."""
        raise NotImplementedError(f"task {self.name!r} does not support steerable methods")

    def steer(self, method: SteerableMethod, experts: list[Any]) -> RunOutput:
        """Evaluate the policy that `method` makes for its preference from its shared training:
        the experts (one per objective, in order) or the one conditioned policy."""
        raise NotImplementedError(f"task {self.name!r} does not support steerable methods")

    @classmethod
    def migrated_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """A record's task parameters as this version reads them (`moabench migrate`); a task
        whose parameters changed shape overrides this."""
        return params


class TaskParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


tasks: Registry[Task] = Registry(
    "task", builtin_module="moabench.tasks", entry_point_group="moabench.tasks"
)
register_task = tasks.register


def make_task(name: str, **params: Any) -> Task:
    return tasks.get(name)(**params)

"""moabench: a benchmark and evaluation harness for multi-objective alignment."""

from moabench.algorithm import (
    Algorithm,
    GramRule,
    Paradigm,
    algorithms,
    make_algorithm,
    register_algorithm,
)
from moabench.gradients import combine, gram_matrix, per_objective_gradients
from moabench.preferences import simplex_lattice, validate_preference
from moabench.task import ObjectiveSpace, RunOutput, Task, make_task, register_task, tasks

__version__ = "0.1.0"

__all__ = [
    "Algorithm",
    "GramRule",
    "ObjectiveSpace",
    "Paradigm",
    "RunOutput",
    "Task",
    "algorithms",
    "combine",
    "gram_matrix",
    "make_algorithm",
    "make_task",
    "per_objective_gradients",
    "register_algorithm",
    "register_task",
    "simplex_lattice",
    "tasks",
    "validate_preference",
]

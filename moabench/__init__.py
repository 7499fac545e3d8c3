"""moabench: a benchmark and evaluation harness for multi-objective alignment.

The registries live in `moabench.core.algorithm.algorithms` and `moabench.core.task.tasks`; they are not
re-exported here because `moabench.algorithms` and `moabench.tasks` are the built-in subpackages.
"""

from moabench.core.algorithm import (
    Algorithm,
    GramRule,
    Paradigm,
    PreferenceLoss,
    make_algorithm,
    register_algorithm,
)
from moabench.core.gradients import combine, gram_matrix, per_objective_gradients
from moabench.core.preferences import simplex_lattice, validate_preference
from moabench.core.task import ObjectiveSpace, RunOutput, Task, make_task, register_task

__version__ = "0.1.0"

__all__ = [
    "Algorithm",
    "GramRule",
    "ObjectiveSpace",
    "Paradigm",
    "PreferenceLoss",
    "RunOutput",
    "Task",
    "combine",
    "gram_matrix",
    "make_algorithm",
    "make_task",
    "per_objective_gradients",
    "register_algorithm",
    "register_task",
    "simplex_lattice",
    "validate_preference",
]

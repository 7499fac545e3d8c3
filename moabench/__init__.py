"""moabench: a benchmark and evaluation harness for multi-objective alignment.

The registries live in `moabench.core.algorithm.algorithms` and `moabench.core.task.tasks`; they are not
re-exported here because `moabench.algorithms` and `moabench.tasks` are the built-in subpackages.
"""

from moabench.core.environment import configure_process

configure_process()  # before anything imports torch: CPU code paths, CUDA's allocator

from moabench.core.algorithm import (  # noqa: E402
    Algorithm,
    GramRule,
    Paradigm,
    PreferenceLoss,
    SteerableMethod,
    make_algorithm,
    register_algorithm,
)
from moabench.core.preferences import simplex_lattice, validate_preference  # noqa: E402
from moabench.core.task import ObjectiveSpace, RunOutput, Task, make_task, register_task  # noqa: E402

__version__ = "0.1.0"

#: Imported on first use (PEP 562): they import torch, which `import moabench` (and so `moabench
#: --help` and `moabench list`) does not.
_GRADIENT_FUNCTIONS = ("combine", "gram_matrix", "per_objective_gradients")


def __getattr__(name: str) -> object:
    if name in _GRADIENT_FUNCTIONS:
        from moabench.core import gradients

        return getattr(gradients, name)
    raise AttributeError(f"module 'moabench' has no attribute {name!r}")

__all__ = [
    "Algorithm",
    "GramRule",
    "ObjectiveSpace",
    "Paradigm",
    "PreferenceLoss",
    "RunOutput",
    "SteerableMethod",
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

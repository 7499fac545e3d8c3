"""Test-only plugin: the `crash` rule kills its worker process, to test how sweep executors survive
worker failures. With MOABENCH_CRASH_ONCE=<path> it crashes only while <path> does not exist
(and creates it first), so a retried run succeeds; otherwise it crashes every time."""

import os
from pathlib import Path

import numpy as np

from moabench.core.algorithm import GramRule, register_algorithm


@register_algorithm("crash")
class Crash(GramRule):
    """Test-only: kills the worker process on its first step."""

    needs_gram = False

    def coefficients(self, gram, learning_rate=0.0):
        marker = os.environ.get("MOABENCH_CRASH_ONCE")
        if marker is None or not Path(marker).exists():
            if marker is not None:
                Path(marker).touch()
            os._exit(1)
        return np.asarray(self.preference)

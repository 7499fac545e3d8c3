"""What `import moabench` sets in the process environment, before torch reads it: the CPU code
paths (`determinism.pin_cpu_numerics`) and CUDA's allocator. Sweep workers and launched processes
inherit it; a variable the user set is left as it is."""

from __future__ import annotations

import os

from moabench.core.determinism import pin_cpu_numerics

#: CUDA memory in expandable segments: micro-batches of varying widths fragment fixed-size ones.
CUDA_ALLOCATOR = "expandable_segments:True"


def configure_process() -> None:
    """Pin the CPU code paths and, unless the user configured the allocator, use expandable
    segments. Set at import, not when a model is placed: CUDA reads its allocator's settings
    once, when it initialises, which a launcher's process group or a device query does first."""
    pin_cpu_numerics()
    if not {"PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"} & set(os.environ):
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = CUDA_ALLOCATOR

"""Results that do not depend on the machine: its core count, or the vector instructions its CPU has."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: The CPU code paths every float kernel runs on, whatever the x86 CPU offers beyond AVX2: MKL's
#: conditional numerical reproducibility branch (matmuls), ATen's vectorised kernels (reductions,
#: softmax, norms) and oneDNN's. Without them a host with AVX-512 and one without, or MKL on two
#: CPU models, sum in different orders: measured, a tiny `cagrad` run on safety moved by one
#: evaluation sample (0.002) between two hosts of the same "AMD EPYC" model, and `MKL_CBWR=AVX2`
#: alone restored it. A variable the user has set is left as it is (recorded in provenance).
CPU_NUMERICS = {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def pin_cpu_numerics() -> None:
    """Set `CPU_NUMERICS` in this process's environment (inherited by sweep workers), unless the
    user set them. ATen reads its variable when torch is imported: after that it stays unpinned
    for this process (provenance records the capability torch uses)."""
    for name, value in CPU_NUMERICS.items():
        os.environ.setdefault(name, value)


def cpu_numerics() -> dict[str, str | None]:
    """The CPU code paths this process runs on, for a record's provenance."""
    recorded: dict[str, str | None] = {name: os.environ.get(name) for name in CPU_NUMERICS}
    torch = sys.modules.get("torch")
    if torch is not None:
        recorded["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return recorded


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run on one intra-op thread: float reductions then do not depend on the machine's core
    count, so the same config and seed give the same numbers in a sweep worker or a single run."""
    import torch  # on use: importing the runner (to plan or check runs) imports no torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

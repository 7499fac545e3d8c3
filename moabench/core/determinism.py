"""Results that do not depend on the machine's core count."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


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

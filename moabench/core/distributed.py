"""Data parallelism: the processes a launcher started, and the few collectives with which the
trainers make every process see the global batch.

`accelerate launch --num_processes N` and `torchrun --nproc_per_node N` start N copies of a
command with WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in their environment;
`data_parallel()` joins them into torch's default process group (gloo for CPU tensors, NCCL for
CUDA tensors where torch has it) and puts each process on its own GPU. Each process then trains
on its share of the global batch (`shard`); the per-objective gradients are averaged over the
processes before the Gram matrix (`average`, in `moabench.core.gradients`), and what observes
rewards sees every process's (`gather`).

Outside a launcher (or with one process) every function here returns its input untouched, so a
one-process run computes bit for bit what it computed before data parallelism existed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist

from moabench.core.errors import ConfigError


def launched_processes() -> int:
    """How many processes a launcher started for this command (WORLD_SIZE; 1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@contextmanager
def data_parallel() -> Iterator[int]:
    """Join the launcher's processes for the duration (once: an already joined group is kept);
    yields the number of processes."""
    started = launched_processes() > 1 and not dist.is_initialized()
    if started:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank < torch.cuda.device_count():  # one GPU per process, where there are GPUs
            torch.cuda.set_device(local_rank)
        dist.init_process_group()  # no backend named: gloo for CPU tensors, NCCL for CUDA ones
    try:
        yield processes()
    finally:
        if started:
            dist.destroy_process_group()


@contextmanager
def main_process_first() -> Iterator[None]:
    """Process 0 runs the block first, the others once it has finished (a cache that process 0
    fills, such as a reference policy that transformers' `save_pretrained` writes on process 0
    only, is then there for them). Every process must enter it."""
    if rank() > 0:
        dist.barrier()
    yield
    if processes() > 1 and rank() == 0:
        dist.barrier()


def processes() -> int:
    """The number of processes training together (1 outside a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's index among them (0 outside a process group)."""
    return dist.get_rank() if processes() > 1 else 0


def shard(size: int, what: str) -> slice:
    """This process's contiguous share of `size` items of the global batch, or a `ConfigError`
    when the processes cannot take equal shares (`what` names the parameter)."""
    n = processes()
    if size % n:
        raise ConfigError(
            f"{what}={size} must be divisible by the {n} processes (each trains on an equal "
            "share of the global batch)"
        )
    share = size // n
    return slice(rank() * share, (rank() + 1) * share)


def average(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` replaced in place by its mean over the processes (all-reduce of the sum / N)."""
    n = processes()
    if n > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(n)
    return tensor


def average_gradients(parameters: list[torch.Tensor]) -> None:
    """Each parameter's `.grad` averaged over the processes (after a backward pass of a loss that
    is each process's mean over its share; the processes hold the same parameters)."""
    for parameter in parameters:
        if parameter.grad is not None:
            average(parameter.grad)


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's `tensor` (equal shapes) concatenated along dimension 0 in process order."""
    n = processes()
    if n == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(n)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def gather_rows(array: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """`gather` for a numpy array (such as one process's rewards), through a tensor on `device`
    (the process group's device); the array itself with one process."""
    if processes() == 1:
        return array
    return gather(torch.as_tensor(array, device=device)).cpu().numpy()

"""Data parallelism: the processes a launcher started, and the few collectives with which the
trainers make every process see the global batch.

`accelerate launch --num_processes N` and `torchrun --nproc_per_node N` start N copies of a
command with WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in their environment;
`data_parallel()` joins them into torch's default process group (gloo for CPU tensors, NCCL for
CUDA tensors where torch has it; a collective waits at most `TIMEOUT`) and puts each process on
the GPU of its LOCAL_RANK. The trainable parameters are copied from process 0
(`broadcast_from_first`), so the processes start equal whatever their random initialisation.
Each process then trains on its share of the global batch (`shard`); the per-objective gradients
are averaged over the processes before the Gram matrix (`average`, in `moabench.core.gradients`),
and what observes rewards sees every process's (`gather`). What may fail on one process alone
(sampling, scoring) runs in `failing_together`, so that every process raises and none waits in a
collective for one that has stopped.

Outside a launcher (or with one process) every function here returns its input untouched, so a
one-process run computes bit for bit what it computed before data parallelism existed.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from moabench.core.errors import ConfigError

#: How long a collective waits for the other processes before it fails (torch's default is 10
#: minutes, which a math step's longest sampling can exceed on one process while the others wait).
TIMEOUT = timedelta(minutes=60)


#: Elements per flat copy of a collective over many tensors (`_flat_in_place`): 256 MiB in float32.
BUCKET = 1 << 26


def launched_processes() -> int:
    """How many processes a launcher started for this command (WORLD_SIZE; 1 without one), or
    a `ConfigError` for `accelerate launch --cpu --num_processes N`, whose simple launcher starts
    one process (without WORLD_SIZE) where several were asked for."""
    if "WORLD_SIZE" not in os.environ and _accelerate_started_one_of_several():
        raise ConfigError(
            "accelerate launch --cpu with --num_processes above 1 started one process (its "
            "simple launcher; several CPU processes need --mpirun_hostfile): use accelerate "
            "launch --multi_gpu --num_processes N (its torchrun launcher also serves CPUs) or "
            "torchrun --nproc_per_node N"
        )
    return int(os.environ.get("WORLD_SIZE", "1"))


def _accelerate_started_one_of_several() -> bool:
    """accelerate's simple launcher sets MASTER_ADDR only when asked for several processes."""
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true"
    return cpu and "MASTER_ADDR" in os.environ


@contextmanager
def data_parallel() -> Iterator[int]:
    """Join the launcher's processes for the duration (once: an already joined group is kept);
    yields the number of processes."""
    started = launched_processes() > 1 and not dist.is_initialized()
    if started:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        gpus = torch.cuda.device_count()
        if gpus:  # one GPU per process, where there are GPUs
            if local_rank >= gpus:
                raise ConfigError(
                    f"process of local rank {local_rank} has no GPU of its own: this machine "
                    f"has {gpus} visible; launch at most {gpus} processes per machine"
                )
            torch.cuda.set_device(local_rank)
        # no backend named: gloo for CPU tensors, NCCL for CUDA ones
        dist.init_process_group(timeout=TIMEOUT)
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


def summed(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` replaced in place by its sum over the processes (all-reduce)."""
    if processes() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` replaced in place by its mean over the processes (all-reduce of the sum / N)."""
    n = processes()
    if n > 1:
        summed(tensor).div_(n)
    return tensor


def average_gradients(parameters: Sequence[torch.Tensor]) -> None:
    """Each parameter's `.grad` averaged over the processes (after a backward pass of a loss that
    is each process's mean over its share; the processes hold the same parameters), in one
    all-reduce per dtype and device of a flat copy of the gradients."""
    if processes() > 1:
        _flat_in_place([p.grad for p in parameters if p.grad is not None], average)


def broadcast_from_first(parameters: Sequence[torch.Tensor]) -> None:
    """Each of `parameters` replaced in place by process 0's (one broadcast per dtype and
    device), so that the processes start from equal parameters however they were initialised."""
    if processes() > 1:
        with torch.no_grad():
            _flat_in_place([p.data for p in parameters], lambda flat: dist.broadcast(flat, 0))


def _flat_in_place(tensors: Sequence[torch.Tensor], collective) -> None:
    """Apply `collective` (in place) to flat copies of buckets of the tensors (one dtype and
    device each, up to `BUCKET` elements unless one tensor is larger), and copy the results back:
    a few collectives instead of one per tensor, and at most a bucket's copy at a time."""
    buckets: dict[tuple[torch.dtype, torch.device], list[list[torch.Tensor]]] = {}
    for tensor in tensors:
        kind = buckets.setdefault((tensor.dtype, tensor.device), [[]])
        if kind[-1] and sum(t.numel() for t in kind[-1]) + tensor.numel() > BUCKET:
            kind.append([])
        kind[-1].append(tensor)
    for bucket in (bucket for kind in buckets.values() for bucket in kind):
        flat = torch.cat([t.reshape(-1) for t in bucket])
        collective(flat)
        for tensor, part in zip(bucket, flat.split([t.numel() for t in bucket])):
            tensor.copy_(part.view_as(tensor))


@contextmanager
def failing_together() -> Iterator[None]:
    """Run the block on every process; an exception on any process is raised on every process
    (its own where it failed, else the first failed process's), so that none goes on to wait in
    a collective for a process that has stopped. Every process must enter it (one collective)."""
    error: Exception | None = None
    try:
        yield
    except Exception as raised:  # noqa: BLE001 - re-raised below, on every process
        error = raised
    if processes() > 1:
        errors: list[Exception | None] = [None] * processes()
        dist.all_gather_object(errors, _picklable(error))
        error = error or next((e for e in errors if e is not None), None)
    if error is not None:
        raise error


def _picklable(error: Exception | None) -> Exception | None:
    """`error`, or a RuntimeError with its type and message where it does not survive pickling."""
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any failure to round-trip
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


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

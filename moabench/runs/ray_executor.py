"""Sweeps on Ray: each run is a Ray task with its resource requests (one CPU, `gpus_per_run`
GPUs), writing the same records as the local executor, so a sweep resumes the same way.

A worker that dies (killed, out of memory, node lost) has its run retried `retries` times by
Ray; a run that still fails stops the sweep with a `RunError` (a failure of the machine, not of
the algorithm: no record). Records are written by the run itself into `results_dir` (on a
cluster: a shared filesystem), atomically. Ray is an optional extra:
`pip install "moabench[ray]"`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from moabench.core.errors import ConfigError
from moabench.runs.records import RunConfig, RunRecord
from moabench.runs.runner import RunError, run_and_record, run_label


def run_on_ray(
    pending: Sequence[RunConfig],
    results_dir: Path,
    collect: Callable[[RunRecord | None], None],
    address: str | None = None,
    cpus: int | None = None,
    gpus_per_run: float = 0.0,
    retries: int = 1,
) -> None:
    """Run `pending` as Ray tasks; `address=None` starts a local Ray instance with `cpus` CPUs."""
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here and address is not None:
        check_answers(address)
    if started_here:
        try:
            ray.init(
                address=address, num_cpus=cpus if address is None else None,
                include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                configure_logging=False,
            )  # fmt: skip
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = f"Ray address {address!r}" if address else "a local Ray instance"
            raise ConfigError(f"could not connect to {where}: {error}") from None
    running = {}
    try:
        remote = ray.remote(run_and_record).options(
            num_cpus=1, num_gpus=gpus_per_run, max_retries=retries
        )
        running = {remote.remote(config, Path(results_dir)): config for config in pending}
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            config = running.pop(ref)
            try:
                record = ray.get(ref)
            except ray.exceptions.RayTaskError as error:  # the run's own RunError, say
                raise error.cause from None
            except ray.exceptions.RayError as error:
                raise RunError(
                    f"{run_label(config)}: worker failure after {retries} retries "
                    f"({type(error).__name__}); no record written"
                ) from None
            collect(record)
    finally:
        for ref in running:  # stopped by an error or Ctrl-C: no queued run starts
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def check_answers(address: str, timeout: float = 5.0) -> None:
    """A `ConfigError` unless something listens at a HOST:PORT (or ray://HOST:PORT) address:
    ray.init would otherwise keep retrying for minutes. "auto" and "local" are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ConfigError(
            f"could not connect to Ray address {address!r}: {error.strerror or error}"
        ) from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--executor ray needs Ray, an optional extra: pip install 'moabench[ray]'"
        ) from None
    return ray

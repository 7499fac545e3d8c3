"""Sweeps: algorithms x tasks x preference grid x seeds, sequential or on local worker processes.

Every run is keyed by the hash of its config; finished keys on disk are skipped, so re-running a
sweep resumes it. Each worker writes its own records atomically, so a killed sweep loses at most
the runs in flight and never leaves a partial record.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from moabench.core.algorithm import Paradigm, algorithms
from moabench.core.preferences import simplex_lattice
from moabench.core.task import Task, tasks
from moabench.runs.records import (
    RunConfig,
    RunRecord,
    ensure_writable,
    finished_keys,
    read_record,
    record_path,
)
from moabench.runs.runner import pairs_with, resolve_config, run_and_record


class SweepConfig(BaseModel):
    """A sweep as a file (`moabench sweep --config sweep.json`) or from the command line.

    `algorithms` / `tasks` accept names and the groups "all" / a paradigm name ("analytic").
    """

    model_config = ConfigDict(extra="forbid")

    algorithms: list[str] = Field(default_factory=lambda: ["all"])
    tasks: list[str] = Field(default_factory=lambda: ["all"])
    seeds: list[int] | None = Field(
        None, description="None: each task's standard seeds, 0..Task.standard_seeds - 1"
    )
    partitions: int | None = Field(None, ge=1, description="simplex-lattice partitions per task")
    algorithm_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    task_params: dict[str, dict[str, Any]] = Field(default_factory=dict)


@dataclass
class SweepPlan:
    configs: list[RunConfig]
    #: (algorithm, task) pairs left out because the algorithm does not support the task's paradigm.
    unsupported: list[tuple[str, str]] = field(default_factory=list)


def expand_names(names: Iterable[str], groups: dict[str, list[str]]) -> list[str]:
    """Names with each group name replaced by its members, without repeats, in order."""
    expanded: list[str] = []
    for name in names:
        for item in groups.get(name, [name]):
            if item not in expanded:
                expanded.append(item)
    return expanded


def seeds_for(task_cls: type[Task], seeds: list[int] | None) -> list[int]:
    """The sweep's seeds for a task: those given, else the task's standard ones."""
    return list(range(task_cls.standard_seeds)) if seeds is None else seeds


def plan_sweep(config: SweepConfig) -> SweepPlan:
    """Every run of the sweep, with validated, fully resolved configs (raises on bad input)."""
    algorithm_names = expand_names(config.algorithms, {"all": algorithms.names()})
    task_groups = {"all": tasks.names()} | {
        paradigm.value: [t for t in tasks.names() if paradigm in tasks.get(t).paradigms]
        for paradigm in Paradigm
    }
    task_names = expand_names(config.tasks, task_groups)
    for name in algorithm_names:
        algorithms.get(name)  # unknown names fail before anything runs
    plan = SweepPlan(configs=[])
    for task_name in task_names:
        task_cls = tasks.get(task_name)
        task_params = config.task_params.get(task_name, {})
        chosen = task_params.get("paradigm")
        offered = [Paradigm(chosen)] if chosen is not None else list(task_cls.paradigms)
        for paradigm in offered:
            params = task_params | (
                {"paradigm": paradigm.value} if len(task_cls.paradigms) > 1 else {}
            )
            grid = simplex_lattice(task_cls(**params).space.n_objectives, config.partitions)
            for algorithm_name in algorithm_names:
                algorithm_cls = algorithms.get(algorithm_name)
                algorithm_params = config.algorithm_params.get(algorithm_name, {})
                if not pairs_with(algorithm_cls, paradigm, algorithm_params):
                    if (
                        not any(pairs_with(algorithm_cls, p, algorithm_params) for p in offered)
                        and paradigm == offered[0]
                    ):
                        plan.unsupported.append((algorithm_name, task_name))
                    continue
                for preference in grid:
                    for seed in seeds_for(task_cls, config.seeds):
                        plan.configs.append(
                            resolve_config(
                                algorithm_name,
                                task_name,
                                preference,
                                seed,
                                algorithm_params,
                                params,
                            )
                        )
    return plan


@dataclass
class SweepSummary:
    total: int
    already_done: int
    ok: int = 0
    failed: list[RunRecord] = field(default_factory=list)
    #: runs that another sweep on the same folder held a claim on, or finished meanwhile
    elsewhere: int = 0


def run_sweep(
    configs: Sequence[RunConfig],
    results_dir: Path,
    workers: int = 1,
    on_record: Callable[[RunRecord | None], None] | None = None,
    executor: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
    gpus_per_run: float = 0.0,
    retry_failed: bool = False,
) -> SweepSummary:
    """Run every config whose key has no readable record in `results_dir` (nor a failed one,
    with `retry_failed`): on `workers` local processes, or as Ray tasks (`executor="ray"`, on
    `ray_address` or a local instance of `workers` CPUs)."""
    ensure_writable(results_dir)
    unique = list({config.key(): config for config in configs}.values())
    done = finished_keys(results_dir, retry_failed)
    pending = [config for config in unique if config.key() not in done]
    summary = SweepSummary(total=len(unique), already_done=len(unique) - len(pending))

    collected: set[str] = set()

    def collect(record: RunRecord | None) -> None:
        if record is not None:
            collected.add(record.config.key())
        if record is None:  # another sweep on this folder claimed or finished it
            summary.elsewhere += 1
        elif record.status == "ok":
            summary.ok += 1
        else:
            summary.failed.append(record)
        if on_record is not None:
            on_record(record)

    if executor == "ray":
        from moabench.runs.ray_executor import run_on_ray

        run_on_ray(pending, results_dir, collect, ray_address, workers, gpus_per_run)
        return summary
    if workers <= 1 or len(pending) <= 1:
        try:
            for config in pending:
                collect(run_and_record(config, results_dir, retry_failed))
        except KeyboardInterrupt:
            raise SweepInterrupted(summary) from None
        return summary
    # forkserver: workers fork from a clean server that imported moabench once (no torch state
    # is inherited from this process, and no worker pays the import again).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["moabench.runs.sweep", "moabench.algorithms", "moabench.tasks"])
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_setup, initargs=(os.getpid(),)
    )
    futures = []
    try:
        for config in pending:
            futures.append(pool.submit(run_and_record, config, results_dir, retry_failed))
        for future in as_completed(futures):
            collect(future.result())
    except KeyboardInterrupt:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a 2nd Ctrl-C must not break it
        try:
            pool.shutdown(wait=False, cancel_futures=True)  # no queued run starts
            for worker in multiprocessing.active_children():
                worker.terminate()  # runs in flight leave no record: a resume re-runs them
            pool.shutdown(wait=True)
        finally:
            signal.signal(signal.SIGINT, previous)
        for future, config in zip(futures, pending):  # written, but not yet reported, when stopped
            path = record_path(results_dir, config.key())
            if not future.cancelled() and config.key() not in collected and path.exists():
                collect(read_record(path))
        raise SweepInterrupted(summary) from None
    pool.shutdown(wait=True)
    return summary


class SweepInterrupted(Exception):
    """Ctrl-C stopped the sweep; `summary` counts the runs that finished before it."""

    def __init__(self, summary: SweepSummary) -> None:
        super().__init__("interrupted")
        self.summary = summary


def _worker_setup(main_pid: int) -> None:
    """In each worker: Ctrl-C is the main process's to handle (it stops the workers), and a
    worker whose main process is gone (killed with SIGKILL, say) exits within a second instead
    of running on as an orphan."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def exit_when_orphaned() -> None:
        while True:
            time.sleep(1)
            try:
                os.kill(main_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # alive, owned by another user: not ours to judge
                pass

    threading.Thread(target=exit_when_orphaned, daemon=True).start()

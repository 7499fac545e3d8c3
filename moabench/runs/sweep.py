"""Sweeps: algorithms x tasks x preference grid x seeds, sequential or on local worker processes.

Every run is keyed by the hash of its config; finished keys on disk are skipped, so re-running a
sweep resumes it (a record this version cannot read is kept, and its run skipped). Each worker
writes its own records atomically, so a killed sweep loses at most the runs in flight and never
leaves a partial record.

A sweep stops at the first run that fails for another reason than its own divergence (a record
that cannot be written, a dataset, a model, the cache: `RunError`, `RecordWriteError`): no queued
run starts, and no record is written for it. Ctrl-C and SIGTERM (what schedulers send, to the
main process or to the whole process group) stop it the same way (`SweepInterrupted`): the workers
release their claims and exit, and the runs in flight leave no record.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from moabench.core.algorithm import Algorithm, Paradigm, algorithms
from moabench.core.preferences import simplex_lattice
from moabench.core.task import Task, tasks
from moabench.runs.claims import release_claims
from moabench.runs.records import (
    SEED_LIMIT,
    CorruptRecordError,
    RunConfig,
    RunRecord,
    ensure_writable,
    read_record,
    record_path,
    records_on_disk,
)
from moabench.runs.runner import (
    RunError,
    front_key,
    pairs_with,
    resolve_config,
    run_and_record,
    run_front,
)

#: A sweep of more runs than this is planned only when confirmed (`plan_sweep(..., limit=None)`).
CONFIRM_ABOVE_RUNS = 20_000
#: Resident memory a language run's worker takes (the tiny scale: about 480 MB), for the cap
#: on local workers.
WORKER_MEMORY_BYTES = 512 * 2**20


class SweepConfig(BaseModel):
    """A sweep as a file (`moabench sweep --config sweep.json`) or from the command line.

    `algorithms` / `tasks` accept names and the groups "all" / a paradigm name ("analytic").
    """

    model_config = ConfigDict(extra="forbid")

    algorithms: list[str] = Field(default_factory=lambda: ["all"])
    tasks: list[str] = Field(default_factory=lambda: ["all"])
    seeds: list[Annotated[int, Field(ge=0, lt=SEED_LIMIT)]] | None = Field(
        None, description="None: each task's standard seeds per paradigm, `Task.seeds`"
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


def seeds_for(task_cls: type[Task], paradigm: Paradigm, seeds: list[int] | None) -> list[int]:
    """The sweep's seeds for a task in `paradigm`: those given (without repeats), else the
    task's standard ones."""
    return task_cls.seeds(paradigm) if seeds is None else list(dict.fromkeys(seeds))


@dataclass
class Cell:
    """One (algorithm, task, paradigm) of a sweep: its grid's size and its seeds."""

    algorithm: str
    algorithm_params: dict[str, Any]
    task: str
    task_params: dict[str, Any]
    n_objectives: int
    seeds: list[int]


class PlanTooLargeError(ValueError):
    """A sweep of more runs than the limit it was planned under."""


def plan_sweep(config: SweepConfig, limit: int | None = None) -> SweepPlan:
    """Every run of the sweep, with validated, fully resolved configs (raises on bad input); a
    `PlanTooLargeError` when it holds more than `limit` runs, before any is built."""
    unsupported: list[tuple[str, str]] = []
    cells = list(_cells(config, unsupported))
    size = sum(lattice_size(c.n_objectives, config.partitions) * len(c.seeds) for c in cells)
    if limit is not None and size > limit:
        raise PlanTooLargeError(
            f"the sweep plans {size:,} runs, more than {limit:,}; fewer partitions, seeds or "
            "algorithms, or confirm it"
        )
    plan = SweepPlan(configs=[], unsupported=unsupported)
    for cell in cells:
        for preference in simplex_lattice(cell.n_objectives, config.partitions):
            for seed in cell.seeds:
                plan.configs.append(
                    resolve_config(
                        cell.algorithm,
                        cell.task,
                        preference,
                        seed,
                        cell.algorithm_params,
                        cell.task_params,
                    )
                )
    return plan


def lattice_size(n_objectives: int, partitions: int | None) -> int:
    """How many points `simplex_lattice(n_objectives, partitions)` has, without building it."""
    if partitions is None:
        return len(simplex_lattice(n_objectives))  # a standard grid: a few points
    return math.comb(partitions + n_objectives - 1, n_objectives - 1)


def _cells(config: SweepConfig, unsupported: list[tuple[str, str]]) -> Iterator[Cell]:
    """The sweep's (algorithm, task, paradigm) cells; the (algorithm, task) pairs left out, as
    the algorithm does not support the task's paradigms, are appended to `unsupported`."""
    algorithm_names = expand_names(config.algorithms, {"all": algorithms.names()})
    task_groups = {"all": tasks.names()} | {
        paradigm.value: [t for t in tasks.names() if paradigm in tasks.get(t).paradigms]
        for paradigm in Paradigm
    }
    task_names = expand_names(config.tasks, task_groups)
    for name in algorithm_names:
        algorithms.get(name)  # unknown names fail before anything runs
    for task_name in task_names:
        task_cls = tasks.get(task_name)
        task_params = config.task_params.get(task_name, {})
        chosen = task_params.get("paradigm")
        offered = [Paradigm(chosen)] if chosen is not None else list(task_cls.paradigms)
        for paradigm in offered:
            params = task_params | (
                {"paradigm": paradigm.value} if len(task_cls.paradigms) > 1 else {}
            )
            n_objectives = task_cls(**params).space.n_objectives
            for algorithm_name in algorithm_names:
                algorithm_cls = algorithms.get(algorithm_name)
                algorithm_params = config.algorithm_params.get(algorithm_name, {})
                if not pairs_with(algorithm_cls, paradigm, algorithm_params):
                    if (
                        not any(pairs_with(algorithm_cls, p, algorithm_params) for p in offered)
                        and paradigm == offered[0]
                    ):
                        unsupported.append((algorithm_name, task_name))
                    continue
                variants = [] if algorithm_params else standard_variants(algorithm_cls, paradigm)
                for chosen in [algorithm_params, *variants]:
                    yield Cell(
                        algorithm_name, chosen, task_name, params, n_objectives,
                        seeds_for(task_cls, paradigm, config.seeds),
                    )  # fmt: skip


def standard_variants(algorithm_cls: type[Algorithm], paradigm: Paradigm) -> list[dict[str, Any]]:
    """The algorithm's `standard_variants` that pair with `paradigm`: a sweep that gives the
    algorithm no parameters runs each as a configuration (a leaderboard row) of its own."""
    return [v for v in algorithm_cls.standard_variants if pairs_with(algorithm_cls, paradigm, v)]


def usable_workers(requested: int) -> int:
    """`requested`, capped at this machine's CPUs (those this process may use) and at the
    workers its available memory holds (`WORKER_MEMORY_BYTES` each); at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cap = cpus or 1
    available = _available_memory()
    if available is not None:
        cap = min(cap, available // WORKER_MEMORY_BYTES)
    return max(1, min(requested, cap))


def _available_memory() -> int | None:
    """Bytes of memory available to new processes (Linux's MemAvailable), or None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass
class SweepSummary:
    total: int
    already_done: int
    ok: int = 0
    failed: list[RunRecord] = field(default_factory=list)
    #: runs that another sweep on the same folder held a claim on, or finished meanwhile
    elsewhere: int = 0
    #: (path, reason) of records this version cannot read, kept (their runs are not run again)
    kept: list[tuple[Path, str]] = field(default_factory=list)


def run_sweep(
    configs: Sequence[RunConfig],
    results_dir: Path,
    workers: int = 1,
    on_record: Callable[[RunRecord | None], None] | None = None,
    executor: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
    gpus_per_run: float = 0.0,
    retry_failed: bool = False,
    on_pending: Callable[[SweepSummary, Sequence[RunConfig]], None] | None = None,
    front_training: Literal["together", "separate"] = "together",
) -> SweepSummary:
    """Run every config whose key has no record in `results_dir` (nor a failed one, with
    `retry_failed`): on `workers` local processes, or as Ray tasks (`executor="ray"`, on
    `ray_address` or a local instance of `workers` CPUs). A `SweepStopped` at the first run
    that fails for another reason than divergence; `SweepInterrupted` on Ctrl-C or SIGTERM.
    `on_pending` receives the summary and the runs to do, in the order they start, before the
    first; `on_record` each record (None: run by another sweep) as it comes (with
    `front_training="together"` on workers, a job's records when the job ends).

    `front_training="together"` gives each local worker the points of one front as one job
    (`front_jobs`, `run_front`); "separate" each point as a job of its own. Both write the
    same records. Ray runs each point as a task of its own, whatever `front_training` says."""
    ensure_writable(results_dir)
    unique = list({config.key(): config for config in configs}.values())
    on_disk = records_on_disk(results_dir, retry_failed)
    pending = [config for config in unique if config.key() not in on_disk.finished]
    together = front_training == "together" and executor == "local"
    jobs = front_jobs(pending, workers) if together else [[c] for c in pending]
    pending = [config for job in jobs for config in job]  # in the order they start
    keys = {config.key() for config in unique}
    kept = [(path, reason) for path, reason in on_disk.kept if path.stem in keys]
    summary = SweepSummary(
        total=len(unique), already_done=len(unique) - len(pending) - len(kept), kept=kept
    )

    if on_pending is not None:
        on_pending(summary, pending)
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

    with _stop_signals() as received:
        try:
            if executor == "ray":
                from moabench.runs.ray_executor import run_on_ray

                run_on_ray(pending, results_dir, collect, ray_address, workers, gpus_per_run)
            elif workers <= 1 or len(pending) <= 1:
                for config in pending:
                    collect(run_and_record(config, results_dir, retry_failed))
            else:
                _run_on_workers(jobs, results_dir, workers, retry_failed, collect, collected)
        except KeyboardInterrupt:
            raise SweepInterrupted(summary, received[0] if received else signal.SIGINT) from None
        except (RunError, OSError, BrokenProcessPool) as error:  # a setup, the disk, a worker
            raise SweepStopped(summary, error) from None
    return summary


def front_jobs(pending: Sequence[RunConfig], workers: int) -> list[list[RunConfig]]:
    """`pending` as jobs of points of one front each (`front_key`), in the order of their first
    points; with fewer fronts than `workers`, each front is cut into near-equal chunks, so that
    every worker gets one (a sweep of one front on 2 workers runs its two halves at once)."""
    fronts: dict[str, list[RunConfig]] = {}
    for config in pending:
        fronts.setdefault(front_key(config), []).append(config)
    parts = max(1, math.ceil(workers / max(1, len(fronts))))
    return [
        chunk
        for front in fronts.values()
        for chunk in (front[i::parts] for i in range(min(parts, len(front))))
    ]


def _run_on_workers(
    jobs: Sequence[Sequence[RunConfig]],
    results_dir: Path,
    workers: int,
    retry_failed: bool,
    collect: Callable[[RunRecord | None], None],
    collected: set[str],
) -> None:
    """Run each job (`run_front`) on local worker processes; at an error or an interrupt, stop
    them (no queued job starts), collect what they wrote but had not reported, and raise it."""
    # forkserver: workers fork from a clean server that imported moabench once (no torch state
    # is inherited from this process, and no worker pays the import again).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["moabench.runs.sweep", "moabench.algorithms", "moabench.tasks"])
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_setup, initargs=(os.getpid(),)
    )
    futures, workers_started = [], []
    try:
        for job in jobs:
            futures.append(pool.submit(run_front, job, results_dir, retry_failed))
        # the pool starts its workers as runs are submitted; a SIGTERM to the process group
        # kills the forkserver, after which they no longer show among the active children
        workers_started = multiprocessing.active_children()
        for future in as_completed(futures):
            for record in future.result():
                collect(record)
    except BaseException:
        _stop_workers(pool, workers_started)
        for future, job in zip(futures, jobs):  # written, but not yet reported, when stopped
            for config in job if not future.cancelled() else []:
                if config.key() in collected:
                    continue
                try:
                    collect(read_record(record_path(results_dir, config.key())))
                except CorruptRecordError:  # not written (or not a file: the error, maybe)
                    pass
        raise
    pool.shutdown(wait=True)


def _stop_workers(pool: ProcessPoolExecutor, workers: list[multiprocessing.Process]) -> None:
    """Cancel the queued runs and stop the workers: each releases its claim and exits, its run
    leaving no record (a resume runs it again). Ctrl-C and SIGTERM cannot break this."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        pool.shutdown(wait=False, cancel_futures=True)  # no queued run starts
        for pid in {w.pid for w in workers} | {w.pid for w in multiprocessing.active_children()}:
            try:
                os.kill(pid, STOP_WORKER)
            except ProcessLookupError:
                pass
        pool.shutdown(wait=True)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """SIGTERM interrupts the sweep as Ctrl-C does (a `KeyboardInterrupt` in the main thread);
    yields the list that receives the number of the signal that stopped it."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signals are the main's
        yield received
        return

    def interrupt(number: int, frame: object) -> None:
        received.append(number)
        raise KeyboardInterrupt

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for number in previous:
        if previous[number] is not signal.SIG_IGN:  # a background job's ignored Ctrl-C stays so
            signal.signal(number, interrupt)
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class SweepInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the sweep; `summary` counts the runs that finished before it,
    `signal_number` is the signal's."""

    def __init__(self, summary: SweepSummary, signal_number: int = signal.SIGINT) -> None:
        super().__init__("interrupted")
        self.summary = summary
        self.signal_number = int(signal_number)


class SweepStopped(Exception):
    """A run failed for another reason than its own divergence (`error`) and the sweep stopped
    there; `summary` counts the runs that finished before it."""

    def __init__(self, summary: SweepSummary, error: Exception) -> None:
        super().__init__(str(error))
        self.summary = summary
        self.error = error


#: The signal the main process stops a worker with: SIGINT and SIGTERM sent to the whole
#: process group (a terminal's Ctrl-C, a scheduler) are the main process's to handle, so workers
#: ignore them.
STOP_WORKER = signal.SIGUSR1


def _worker_setup(main_pid: int) -> None:
    """In each worker: Ctrl-C and SIGTERM are the main process's to handle (it stops the
    workers with `STOP_WORKER`, on which a worker releases its claims and exits), and a worker
    whose main process is gone (killed with SIGKILL, say) exits within a second instead of
    running on as an orphan."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(STOP_WORKER, _exit_releasing_claims)

    def exit_when_orphaned() -> None:
        while True:
            time.sleep(1)
            if not _alive(main_pid):
                _exit_releasing_claims()

    threading.Thread(target=exit_when_orphaned, daemon=True).start()


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (an exited one that its parent has not reaped yet does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):  # not Linux, or gone meanwhile
        return True
    return state != "Z"


def _exit_releasing_claims(*signal_args: object) -> None:
    release_claims()
    os._exit(1)

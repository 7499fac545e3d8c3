"""One run: resolve and validate a config, train, and turn the outcome into a record.

Configuration errors (unknown names, bad parameters or preferences, unsupported pairings) raise
before anything runs; a run that diverges becomes a record with status "failed" and its reason.

Inside a launcher's process group (`moabench.core.distributed.data_parallel`) a language run
trains data-parallel, every process computing the same record; its provenance holds
`num_processes` (1 for a run of one process).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moabench.core.algorithm import Algorithm, Paradigm, algorithms
from moabench.core.determinism import one_torch_thread
from moabench.core.distributed import processes
from moabench.core.errors import ConfigError, validate_params
from moabench.core.preferences import validate_preference
from moabench.core.task import DivergedError, Task, tasks
from moabench.runs.claims import claimed
from moabench.runs.records import (
    Cost,
    RunConfig,
    RunRecord,
    Trajectory,
    finished_keys,
    run_provenance,
    write_record,
)


class UnsupportedPairingError(ConfigError):
    """An algorithm asked to run on a task of a paradigm it does not support."""


def resolve_config(
    algorithm: str,
    task: str,
    preference: Any = None,
    seed: int = 0,
    algorithm_params: dict[str, Any] | None = None,
    task_params: dict[str, Any] | None = None,
) -> RunConfig:
    """A validated `RunConfig` with every default filled in (so its key names the whole run);
    `preference=None` is the uniform preference over the task's objectives."""
    algorithm_cls = algorithms.get(algorithm)
    task_cls = tasks.get(task)
    task_params = dict(task_params or {})
    if len(task_cls.paradigms) > 1 and task_params.get("paradigm") is None:
        task_params["paradigm"] = default_paradigm(algorithm_cls, task_cls.paradigms).value
    task_instance = task_cls(**task_params)
    if not algorithm_cls.supports(task_instance.paradigm):
        offered = ", ".join(p.value for p in task_cls.paradigms)
        raise UnsupportedPairingError(
            f"algorithm {algorithm!r} does not support {task_instance.paradigm.value} training, "
            f"which is what task {task!r} offers here (the task offers: {offered}; the algorithm "
            f"supports: {', '.join(sorted(p.value for p in algorithm_cls.paradigms))})"
        )
    validated = validate_params(
        algorithm_cls.Params, algorithm_params or {}, f"algorithm {algorithm!r}"
    )
    try:
        algorithm_cls.check_paradigm(validated, task_instance.paradigm)
    except ConfigError as error:
        raise UnsupportedPairingError(str(error)) from None
    resolved_algorithm = validated.model_dump(mode="json")
    resolved_task = task_instance.params.model_dump(mode="json")
    n_objectives = task_instance.space.n_objectives
    if preference is None:
        preference = [1.0 / n_objectives] * n_objectives
    weights = validate_preference(preference, n_objectives)
    return RunConfig(
        algorithm=algorithm,
        algorithm_params=resolved_algorithm,
        task=task,
        task_params=resolved_task,
        preference=[float(w) for w in weights],
        seed=seed,
    )


def pairs_with(
    algorithm_cls: type[Algorithm], paradigm: Paradigm, algorithm_params: dict[str, Any]
) -> bool:
    """Whether the algorithm, with these parameters, runs in `paradigm` training."""
    if not algorithm_cls.supports(paradigm):
        return False
    where = f"algorithm {algorithm_cls.name!r}"
    validated = validate_params(algorithm_cls.Params, algorithm_params, where)
    try:
        algorithm_cls.check_paradigm(validated, paradigm)
    except ConfigError:
        return False
    return True


def default_paradigm(algorithm_cls: type[Algorithm], offered: tuple[Paradigm, ...]) -> Paradigm:
    """The algorithm's home paradigm when the task offers it, else the first offered paradigm
    that the algorithm supports (else the task's default, which then fails the pairing check)."""
    home = algorithm_cls.home_paradigm
    if home is not None and home in offered:
        return home
    return next((p for p in offered if algorithm_cls.supports(p)), offered[0])


def reresolve(record: RunRecord) -> RunRecord:
    """`record` under the config this version resolves for it: parameters added since it was
    written get their defaults, and the key follows. Only valid when those defaults do not change
    results; `moabench reproduce` checks that by re-running."""
    c = record.config
    task_params = tasks.get(c.task).migrated_params(c.task_params)
    config = resolve_config(
        c.algorithm, c.task, c.preference, c.seed, c.algorithm_params, task_params
    )
    return record.model_copy(update={"config": config, "key": config.key()})


def execute(config: RunConfig) -> RunRecord:
    """Run `config` and return its record; divergence is recorded as a failure, not raised."""
    task: Task = tasks.get(config.task)(**config.task_params)
    algorithm: Algorithm = algorithms.get(config.algorithm)(
        config.preference, **config.algorithm_params
    )
    if processes() > 1 and task.paradigm == Paradigm.ANALYTIC:
        raise ConfigError(
            f"task {config.task!r} on {processes()} processes: data parallelism shares a language "
            "task's batch between processes; an analytic problem has none (run it on one)"
        )
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    common = dict(
        key=config.key(),
        config=config,
        paradigm=task.paradigm.value,
        provenance=run_provenance(),
    )
    start = time.perf_counter()
    try:
        with one_torch_thread():
            output = task.run(algorithm, config.seed)
    except DivergedError as error:
        return RunRecord(
            **common,
            objective_space=task.space.to_record(),
            status="failed",
            reason=f"diverged: {error}",
            cost=Cost(wall_time_s=time.perf_counter() - start),
            skipped_rows=task.skipped_rows,
        )
    wall_time = time.perf_counter() - start
    return RunRecord(
        **common,
        objective_space=task.space.to_record(),  # after the run: paper scales measure it
        status="ok",
        objectives=output.objectives,
        trajectory=Trajectory(
            steps=output.trajectory_steps,
            objectives=output.trajectory,
            weights=output.weight_trajectory,
        ),
        capabilities=output.capabilities,
        skipped_rows=task.skipped_rows,  # after the run: the paper scales read their data in it
        cost=Cost(
            wall_time_s=wall_time,
            steps=output.steps,
            gradient_evaluations=output.gradient_evaluations,
        ),
    )


def run_and_record(
    config: RunConfig, results_dir: Path, retry_failed: bool = False
) -> RunRecord | None:
    """Claim the run, execute it and write its record (an unexpected error is recorded as a
    failure); None when another sweep holds its claim or has meanwhile written its record."""
    key = config.key()
    with claimed(results_dir, key) as mine:
        if not mine or key in finished_keys(results_dir, retry_failed, keys=[key]):
            return None
        try:
            record = execute(config)
        except Exception as error:  # noqa: BLE001 - the sweep goes on; the record keeps the reason
            record = failed_record(config, f"error: {type(error).__name__}: {error}")
        write_record(record, results_dir)
    return record


def failed_record(config: RunConfig, reason: str) -> RunRecord:
    task = tasks.get(config.task)(**config.task_params)
    return RunRecord(
        key=config.key(),
        config=config,
        paradigm=task.paradigm.value,
        status="failed",
        reason=reason,
        objective_space=task.space.to_record(),
        cost=Cost(),
        provenance=run_provenance(),
    )

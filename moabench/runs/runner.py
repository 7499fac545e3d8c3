"""One run: resolve and validate a config, train, and turn the outcome into a record.

Configuration errors (unknown names, bad parameters or preferences, unsupported pairings) raise
before anything runs; a run that diverges becomes a record with status "failed" and its reason.

Inside a launcher's process group (`moabench.core.distributed.data_parallel`) a language run
trains data-parallel, every process computing the same record; its provenance holds
`num_processes` (1 for a run of one process).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from moabench.core.algorithm import (
    Algorithm,
    Paradigm,
    SteerableMethod,
    algorithms,
    simplex_vertices,
)
from moabench.core.determinism import one_torch_thread
from moabench.core.errors import ConfigError, validate_params
from moabench.core.preferences import validate_preference
from moabench.core.task import DivergedError, Task, tasks
from moabench.runs.claims import claimed
from moabench.runs.records import (
    CorruptRecordError,
    Cost,
    RunConfig,
    RunRecord,
    SharedTraining,
    Trajectory,
    current_umask,
    finished_keys,
    read_record,
    record_path,
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
    if len(task_cls.paradigms) == 1 and task_params.get("paradigm") == task_cls.paradigms[0]:
        del task_params["paradigm"]  # its only paradigm: the run (and its key) without it
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
        algorithm_cls.check_task_params(task_instance.params)
    except ConfigError as error:
        raise UnsupportedPairingError(str(error)) from None
    resolved_algorithm = validated.model_dump(mode="json")
    resolved_task = task_instance.params.model_dump(mode="json")
    n_objectives = task_instance.space.n_objectives
    if preference is None:
        preference = [1.0 / n_objectives] * n_objectives
    weights = validate_preference(preference, n_objectives)
    from moabench.core.distributed import processes  # torch, once the config is valid

    return RunConfig(
        algorithm=algorithm,
        algorithm_params=resolved_algorithm,
        task=task,
        task_params=resolved_task,
        preference=[float(w) for w in weights],
        seed=seed,
        num_processes=processes(),
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
    ).model_copy(update={"num_processes": c.num_processes})
    return record.model_copy(update={"config": config, "key": config.key()})


def execute(config: RunConfig, results_dir: Path | None = None) -> RunRecord:
    """Run `config` and return its record; divergence is recorded as a failure, not raised.

    A steerable method's shared training (its experts, with their records, or its one
    conditioned policy) is taken from `results_dir`, or trained and kept there when missing
    (`obtain_shared_training`; a temporary folder when it is None), and a run that is an expert
    keeps its trained policy there (`is_expert`)."""
    import torch  # a run's import: `moabench --help` and `list` do not pay it

    from moabench.core.distributed import processes

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
    shared: list[SharedTraining] = []
    start = time.perf_counter()
    try:
        if isinstance(algorithm, SteerableMethod):
            with expert_store(results_dir) as store:
                experts, shared = obtain_shared_training(config, algorithm, task, store)
                start = time.perf_counter()  # the record's own cost: steering, not the experts
                with one_torch_thread():
                    output = task.steer(algorithm, experts)
        else:
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
            shared_training=shared,
        )
    wall_time = time.perf_counter() - start
    if results_dir is not None and output.policy is not None and is_expert(config):
        keep_policy(task, output.policy, policy_path(results_dir, config.key()))
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
        shared_training=shared,
    )


# --- steerable methods: experts trained once, kept beside the records, reused ---------------------

#: seconds between looks at an expert that another process is training
EXPERT_POLL_S = 0.5


def expert_configs(config: RunConfig) -> list[RunConfig]:
    """The expert runs of a steerable method's `config`: its `expert_algorithm` (default
    parameters) at the simplex vertices e_1..e_m, same task parameters and seed."""
    method = algorithms.get(config.algorithm)
    return [
        resolve_config(method.expert_algorithm, config.task, vertex, config.seed, None,
                       config.task_params)
        for vertex in simplex_vertices(len(config.preference))
    ]  # fmt: skip


def is_expert(config: RunConfig) -> bool:
    """Whether `config` is an expert run of a registered steerable method (so its trained
    policy is kept for the methods that reuse it)."""
    if config.preference not in simplex_vertices(len(config.preference)):
        return False
    for name in algorithms.names():
        method = algorithms.get(name)
        if not (
            issubclass(method, SteerableMethod)
            and method.trains_experts()
            and method.expert_algorithm == config.algorithm
        ):
            continue
        try:
            steerable = resolve_config(name, config.task, config.preference, config.seed, None,
                                       config.task_params)  # fmt: skip
        except ConfigError:  # the method does not run on this task, scale or paradigm
            continue
        if config in expert_configs(steerable):
            return True
    return False


def policy_path(results_dir: Path, key: str) -> Path:
    """Where the trained policy of the run `key` is kept: `<results>/.policies/<key>`."""
    return Path(results_dir) / ".policies" / key


#: beside a kept conditioned policy: its `SharedTraining` (what it is, its cost)
TRAINING_FILE = "training.json"


def keep_policy(
    task: Task, policy: Any, path: Path, training: SharedTraining | None = None
) -> None:
    """Save `policy` (if any) and the description of its `training` (if given) into `path`
    atomically (a scratch folder renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    os.chmod(scratch, 0o777 & ~current_umask())  # mkdtemp's 0700 would hide it from the group
    if policy is not None:
        task.save_policy(policy, scratch)
    if training is not None:
        (scratch / TRAINING_FILE).write_text(training.model_dump_json(indent=1) + "\n")
    try:
        os.replace(scratch, path)
    except OSError:  # kept meanwhile by another process: the same run gives the same policy
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def expert_store(results_dir: Path | None) -> Iterator[Path]:
    """`results_dir`, or a temporary folder for a run that writes no records."""
    if results_dir is not None:
        yield Path(results_dir)
        return
    with tempfile.TemporaryDirectory(prefix="moabench-experts-") as scratch:
        yield Path(scratch)


def obtain_shared_training(
    config: RunConfig, method: SteerableMethod, task: Task, store: Path
) -> tuple[list[Any], list[SharedTraining]]:
    """The shared training of the steerable `config` (its experts, or its one conditioned
    policy) and what it cost; a failed one raises `DivergedError` with its reason."""
    if not method.trains_experts():
        key = front_key(config)
        kept = obtain({key: (lambda: load_conditioned(task, key, store),
                             lambda: train_conditioned(task, method, config, key, store))}, store)
        policy, shared = kept[key]
        if shared.status != "ok":
            raise DivergedError(f"its conditioned training ({key}) failed: {shared.reason}")
        return [policy], [shared]
    experts = expert_configs(config)
    kept = obtain(
        {expert.key(): (functools.partial(load_expert, task, expert, store),
                        functools.partial(train_expert, task, expert, store))
         for expert in experts},
        store,
    )  # fmt: skip
    shared = []
    for index, expert in enumerate(experts, start=1):
        record = kept[expert.key()][1]
        shared.append(SharedTraining(key=record.key, algorithm=expert.algorithm,
                                     preference=expert.preference, cost=record.cost))  # fmt: skip
        if record.status != "ok":
            raise DivergedError(f"its expert at e_{index} ({record.key}) failed: {record.reason}")
    return [kept[expert.key()][0] for expert in experts], shared


def obtain(trainings: dict[str, tuple[Callable, Callable]], store: Path) -> dict[str, Any]:
    """{key: (load, train)} -> {key: what load or train returned}: each loaded when kept in
    `store`, else trained under its claim (two processes never train one; the other waits for
    it, working on the next meanwhile)."""
    found: dict[str, Any] = {}
    while len(found) < len(trainings):
        progressed = False
        for key, (load, train) in trainings.items():
            if key in found:
                continue
            kept = load()
            if kept is None:
                with claimed(store, key) as mine:
                    if mine:
                        kept = load() or train()
            if kept is not None:
                found[key] = kept
                progressed = True
        if not progressed:
            time.sleep(EXPERT_POLL_S)
    return found


def front_key(config: RunConfig) -> str:
    """The key of the front `config` is a point of (same algorithm, task, parameters and seed):
    its config's without the preference; also the key of a conditioned training, one per front."""
    return config.model_copy(update={"preference": []}).key()


def load_conditioned(task: Task, key: str, store: Path) -> tuple[Any, SharedTraining] | None:
    """(policy, its training) kept in `store` (no policy for a failed one), or None."""
    path = policy_path(store, key)
    try:
        shared = SharedTraining.model_validate_json((path / TRAINING_FILE).read_text())
    except (OSError, ValueError):
        return None
    return (task.load_policy(path) if shared.status == "ok" else None), shared


def train_conditioned(
    task: Task, method: SteerableMethod, config: RunConfig, key: str, store: Path
) -> tuple[Any, SharedTraining]:
    """Train the conditioned policy and keep it with its training's description and cost."""
    shared = SharedTraining(key=key, algorithm=config.algorithm, preference=[], cost=Cost())
    start = time.perf_counter()
    try:
        with one_torch_thread():
            output = task.train_steerable(method, config.seed)
    except DivergedError as error:
        shared.cost.wall_time_s = time.perf_counter() - start
        failed = shared.model_copy(update={"status": "failed", "reason": f"diverged: {error}"})
        keep_policy(task, None, policy_path(store, key), failed)
        return None, failed
    shared.cost = Cost(wall_time_s=time.perf_counter() - start, steps=output.steps,
                       gradient_evaluations=output.gradient_evaluations)  # fmt: skip
    keep_policy(task, output.policy, policy_path(store, key), shared)
    return task.load_policy(policy_path(store, key)), shared


def load_expert(task: Task, expert: RunConfig, store: Path) -> tuple[Any, RunRecord] | None:
    """(policy, record) of an expert kept in `store` ((None, record) for a failed one), or None
    when it must be trained."""
    path = record_path(store, expert.key())
    if not path.exists():
        return None
    try:
        record = read_record(path)
    except CorruptRecordError:
        return None
    if record.status != "ok":
        return None, record
    kept = policy_path(store, expert.key())
    return (task.load_policy(kept), record) if kept.is_dir() else None


def train_expert(task: Task, expert: RunConfig, store: Path) -> tuple[Any, RunRecord]:
    """Run the expert, keeping its policy, and write its record unless one is there already."""
    record = execute(expert, store)
    if not record_path(store, expert.key()).exists():
        write_record(record, store)
    policy = task.load_policy(policy_path(store, expert.key())) if record.status == "ok" else None
    return policy, record


class RunError(RuntimeError):
    """A run stopped by something other than its own divergence: its setup (the cached
    reference, a dataset, a model), the disk, or a bug. No record is written for it, so the
    leaderboard never ranks it; the message names the run and the cause, on one line."""


def run_label(config: RunConfig) -> str:
    """'ls on zdt1, w=[0.5, 0.5], seed 0' (preferences to 4 significant digits)."""
    weights = ", ".join(f"{w:.4g}" for w in config.preference)
    return f"{config.algorithm} on {config.task}, w=[{weights}], seed {config.seed}"


def run_and_record(
    config: RunConfig, results_dir: Path, retry_failed: bool = False
) -> RunRecord | None:
    """Claim the run, execute it and write its record (ok, or failed by its own divergence);
    None when another sweep holds its claim or has meanwhile written its record. Anything else
    that stops it raises a `RunError` and writes no record."""
    key = config.key()
    with claimed(results_dir, key) as mine:
        if not mine or key in finished_keys(results_dir, retry_failed, keys=[key]):
            return None
        try:
            record = execute(config, results_dir)
        except Exception as error:  # noqa: BLE001 - one line, which pickles across processes
            raise RunError(f"{run_label(config)}: {one_line(error)}; no record written") from None
        write_record(record, results_dir)
    return record


def run_front(
    configs: Sequence[RunConfig], results_dir: Path, retry_failed: bool = False
) -> list[RunRecord | None]:
    """`run_and_record` for points of one front (`front_key`), back to back in this process,
    which they share with what depends only on the task and its data (the per-process caches
    of `moabench.language.tiny`: the reference policy, the pairs and their reference
    log-probabilities, the reference's evaluation). Each point is claimed, recorded, or failed
    by its own divergence on its own; a `RunError` stops the front, the points after it not
    started."""
    return [run_and_record(config, results_dir, retry_failed) for config in configs]


def one_line(error: BaseException) -> str:
    """'Type: the first line of its message' ('Type' alone for an empty message)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__

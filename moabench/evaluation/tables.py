"""Run records -> per-task standings: one `TaskTable` per task configuration, with every
algorithm's metrics summarised over seeds (mean and 95% bootstrap interval).

A *front* is the set of final points of one algorithm configuration on one task and one seed,
across the preference grid. Metrics are computed per front and then summarised over seeds. The
tables are a pure function of the records (fixed bootstrap seed), computed once and rendered by
`markdown`, `site` and `plots`.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from scipy.stats import bootstrap

from moabench.core.algorithm import Paradigm, algorithms
from moabench.core.errors import ConfigError
from moabench.core.task import ObjectiveSpace, tasks
from moabench.evaluation.metrics import checkpoint_front, front_metrics, nondominated
from moabench.runs.records import RunRecord

ReferenceFront = Callable[[str, dict[str, Any]], "np.ndarray | None"]
BOOTSTRAP_SEED = 0
BOOTSTRAP_RESAMPLES = 2000

COLUMNS = {  # metric -> column header, in table order
    "hypervolume": "HV",
    "igd_plus": "IGD+",
    "igd": "IGD",
    "gd": "GD",
    "sparsity": "sparsity",
    "spacing": "spacing",
    "rank_correlation": "pref. rank corr.",
    "inner_product": "w·f",
    "expected_utility": "exp. utility",
    "checkpoint_hypervolume": "HV over checkpoints",
    "steps_to_front": "steps to 95% of it",
    "gradient_evaluations": "grad evals / front",
    "hypervolume_per_kilo_evaluation": "HV per 1k grad evals",
    "wall_time": "wall time / front (s)",
}


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        if math.isnan(self.mean):
            return "-"
        if self.n < 2:
            return f"{self.mean:.4g} (n=1)"
        return f"{self.mean:.4g} [{self.low:.4g}, {self.high:.4g}]"

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high


def mean_interval(values: list[float]) -> Interval:
    """Mean and 95% percentile-bootstrap interval (fixed seed) of per-seed values."""
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if len(data) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(data.mean())
    if len(data) < 2 or np.ptp(data) == 0:
        return Interval(mean, mean, mean, len(data))
    result = bootstrap(
        (data,), np.mean, confidence_level=0.95, n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile", random_state=BOOTSTRAP_SEED,
    )  # fmt: skip
    interval = result.confidence_interval
    return Interval(mean, float(interval.low), float(interval.high), len(data))


@dataclass
class Row:
    algorithm: str
    summary: dict[str, Interval] = field(default_factory=dict)
    seeds: int = 0
    runs: int = 0
    failed: list[RunRecord] = field(default_factory=list)
    supported: bool = True
    config: dict[str, Any] = field(default_factory=dict)  # the algorithm's resolved parameters


@dataclass
class TaskTable:
    label: str
    task: str
    paradigm: str
    space: ObjectiveSpace
    rows: list[Row]
    reference: str  # "exact" or "union"
    plot: str


def device_class(record: RunRecord) -> str:
    """ "cpu", or the GPUs a record ran on: results from different devices get separate tables."""
    gpus = record.provenance.get("hardware", {}).get("gpus") or []
    return "+".join(sorted(str(g) for g in gpus)) or "cpu"


def _canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _label(name: str, params: dict[str, Any], defaults: dict[str, Any] | None) -> str:
    """`name` plus the parameters that differ from the registered defaults."""
    changed = {k: v for k, v in sorted(params.items()) if defaults is None or defaults.get(k) != v}
    return name + "".join(f" {k}={v}" for k, v in changed.items())


def _defaults(registry, name: str) -> dict[str, Any] | None:
    if name not in registry:
        return None
    return json.loads(json.dumps(registry.get(name).hyperparameters()))


def _space(record: RunRecord) -> ObjectiveSpace:
    s = record.objective_space
    return ObjectiveSpace(
        tuple(s["names"]), tuple(s["maximize"]), tuple(s["ideal"]), tuple(s["nadir"])
    )


def default_reference_front(task: str, task_params: dict[str, Any]) -> np.ndarray | None:
    """The registered task's exact front, or None when the task is unknown here or has none."""
    if task not in tasks:
        return None
    return tasks.get(task)(**task_params).pareto_front()


def task_table(
    label: str, records: list[RunRecord], reference_front: ReferenceFront, plot_name: str
) -> tuple[TaskTable, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The standings of every algorithm configuration on one task configuration."""
    first = records[0]
    space = _space(first)
    ok = [r for r in records if r.status == "ok"]
    exact = reference_front(first.config.task, first.config.task_params)
    if exact is not None:
        reference, kind = space.normalize(exact), "exact"
    else:
        reference = nondominated(space.normalize([r.objectives for r in ok])) if ok else None
        kind = "union"

    by_algorithm: dict[str, list[RunRecord]] = defaultdict(list)
    for record in records:
        params = record.config.algorithm_params
        name = _label(
            record.config.algorithm, params, _defaults(algorithms, record.config.algorithm)
        )
        by_algorithm[name].append(record)

    rows, points_by_algorithm = [], {}
    for name, group in sorted(by_algorithm.items()):
        row = Row(
            algorithm=name,
            runs=len(group),
            failed=[r for r in group if r.status != "ok"],
            config={"algorithm": group[0].config.algorithm} | group[0].config.algorithm_params,
        )
        per_seed: dict[int, list[RunRecord]] = defaultdict(list)
        for record in group:
            if record.status == "ok":
                per_seed[record.config.seed].append(record)
        values: dict[str, list[float]] = defaultdict(list)
        for seed in sorted(per_seed):
            front = per_seed[seed]
            points = space.normalize([r.objectives for r in front])
            preferences = np.asarray([r.config.preference for r in front])
            for metric, value in front_metrics(points, preferences, reference).items():
                values[metric].append(value)
            checkpoints = [
                (step, point)
                for r in front
                for step, point in zip(r.trajectory.steps, r.trajectory.objectives)
            ]
            hv, steps = math.nan, math.nan
            if checkpoints:
                hv, steps = checkpoint_front(
                    np.array([step for step, _ in checkpoints]),
                    space.normalize([point for _, point in checkpoints]),
                )
            values["checkpoint_hypervolume"].append(hv)
            values["steps_to_front"].append(steps)
            evaluations = float(sum(r.cost.gradient_evaluations for r in front))
            values["gradient_evaluations"].append(evaluations)
            values["hypervolume_per_kilo_evaluation"].append(
                1000 * values["hypervolume"][-1] / evaluations if evaluations else math.nan
            )
            values["wall_time"].append(float(sum(r.cost.wall_time_s for r in front)))
        row.seeds = len(per_seed)
        row.summary = {metric: mean_interval(values[metric]) for metric in COLUMNS}
        rows.append(row)
        ok_group = [r for r in group if r.status == "ok"]
        points_by_algorithm[name] = (
            np.asarray([r.objectives for r in ok_group]).reshape(-1, space.n_objectives),
            np.asarray([r.config.preference for r in ok_group]).reshape(-1, space.n_objectives),
        )

    paradigm = first.paradigm
    for name in algorithms.names():  # algorithms that cannot run on this task show as n/a
        if not algorithms.get(name).supports(Paradigm(paradigm)):
            rows.append(Row(algorithm=name, supported=False, config={"algorithm": name}))
    rows.sort(key=_rank_key)
    table = TaskTable(label, first.config.task, paradigm, space, rows, kind, plot_name)
    return table, points_by_algorithm


def _rank_key(row: Row) -> tuple:
    hv = row.summary.get("hypervolume")
    missing = hv is None or math.isnan(hv.mean)
    return (not row.supported, missing, -(hv.mean if not missing else 0.0), row.algorithm)


@dataclass
class TaskConfiguration:
    """The records of one task configuration (task parameters and device) and its table."""

    task: str
    task_params: dict[str, Any]
    table: TaskTable
    #: per algorithm label: (final points, their preferences), raw units
    points: dict[str, tuple[np.ndarray, np.ndarray]]


def task_mismatch(record: RunRecord) -> str | None:
    """Why `record` cannot stand in its registered task's table (its parameters are not valid
    here, or its objective space or paradigm are not the task's), or None; a task this
    installation does not know is taken as the record describes it."""
    if record.config.task not in tasks:
        return None
    expected = _task_shape(record.config.task, _canonical(record.config.task_params))
    if isinstance(expected, str):
        return expected
    space, fixed, paradigm = expected
    recorded = record.objective_space
    for part in ("names", "maximize", "ideal", "nadir") if fixed else ("names", "maximize"):
        if list(recorded[part]) != list(getattr(space, part)):
            return (
                f"objective space {part} {recorded[part]}, but task {record.config.task!r} "
                f"with these parameters has {list(getattr(space, part))}"
            )
    if record.paradigm != paradigm:
        return f"paradigm {record.paradigm!r}, but these task parameters give {paradigm!r}"
    return None


@cache
def _task_shape(task: str, params: str) -> tuple[ObjectiveSpace, bool, str] | str:
    """(objective space, whether it is fixed, paradigm) of a task configuration, or the reason
    it is not valid."""
    try:
        instance = tasks.get(task)(**json.loads(params))
    except ConfigError as error:
        return f"its task parameters are not valid here ({error})"
    return instance.space, instance.space_is_fixed, instance.paradigm.value


def standings(
    records: list[RunRecord], reference_front: ReferenceFront = default_reference_front
) -> list[TaskConfiguration]:
    """Group `records` by task configuration (parameters and device class) and compute each
    group's table, in a fixed order."""
    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for record in records:
        params = record.config.task_params | {"device": device_class(record)}
        groups[(record.config.task, _canonical(params))].append(record)
    configurations = []
    for (task, params), group in sorted(groups.items()):
        task_params = json.loads(params)
        device = task_params.pop("device")
        label = _label(task, task_params, _defaults(tasks, task))
        label += "" if device == "cpu" else f" on {device}"
        plot_name = f"plots/{label.replace(' ', '_').replace('=', '-')}.png"
        table, points = task_table(label, group, reference_front, plot_name)
        configurations.append(TaskConfiguration(task, task_params, table, points))
    return configurations

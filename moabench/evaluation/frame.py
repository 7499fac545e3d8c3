"""Run records as data: the numbers every statistic of the leaderboard is computed from.

    >>> from moabench.evaluation import load_results, fronts
    >>> records = load_results("leaderboard/results")  # one row per record
    >>> per_front = fronts(records)  # one row per (task table, algorithm, seed)

`load_results(folder)` reads every usable record under a results folder into a tidy pandas
DataFrame, one row per record, with the columns of `RECORD_COLUMNS`. Files that cannot be read,
or do not fit their registered task, are left out with a warning naming each.

`fronts(records)` groups them into fronts: the final points of one algorithm configuration on
one task table and one seed, across the preference grid. A front is *complete* when every
preference of the grid (the simplex lattice of `moabench sweep`: 11 points for two objectives,
15 for three, or `partitions` as for the sweep) has a record, ok or failed: a failed run leaves
its point out of the front, which lowers its hypervolume, so an algorithm that diverges is not
flattered by dropping the seeds where it did. Records at preferences off the grid (a one-off
`moabench run --preference 0.3,0.7`) belong to no front; `off_grid` counts them. Only complete
fronts are ranked, and only they make a table's union reference front. Each front's row holds
every metric of `metrics.front_metrics`, the fronts over training checkpoints, cost, and `score`:
its hypervolume divided by the hypervolume of the table's reference front, the across-task score.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moabench.core.algorithm import algorithms
from moabench.core.errors import ConfigError
from moabench.core.preferences import simplex_lattice
from moabench.core.task import ObjectiveSpace, tasks
from moabench.evaluation.metrics import (
    checkpoint_front,
    front_metrics,
    hypervolume,
    nondominated,
    nondominated_mask,
)
from moabench.runs.records import RunRecord, load_records

ReferenceFront = Callable[[str, dict[str, Any]], "np.ndarray | None"]
FRONT_KEYS = ["table", "algorithm", "seed"]

#: The columns of `load_results`, one row per record.
RECORD_COLUMNS = {
    "key": "the record's file name (hash of its config)",
    "table": "the task table: task, the task parameters that differ from the defaults, device",
    "task": "task name",
    "task_params": "task parameters, canonical JSON",
    "paradigm": "analytic, preference or online",
    "device": '"cpu" or the GPUs the run used',
    "algorithm": "algorithm label: name and the parameters that differ from the defaults",
    "algorithm_name": "registered algorithm name",
    "algorithm_params": "algorithm parameters, canonical JSON",
    "seed": "seed",
    "preference": "preference vector (tuple)",
    "status": '"ok" or "failed"',
    "reason": "why a run failed (None when ok)",
    "objectives": "final objective vector in raw units (tuple; None when failed)",
    "objective_names": "objective names (tuple)",
    "maximize": "which objectives are maximised (tuple)",
    "ideal": "ideal point of the normalisation (tuple)",
    "nadir": "nadir point of the normalisation (tuple)",
    "steps": "training steps",
    "gradient_evaluations": "per-objective gradient evaluations",
    "wall_time_s": "wall time of the run (s); a steerable method's: its steering's alone",
    "shared_training": "a steerable method's shared trainings, (key, gradient evaluations, "
    "wall time) each, counted once per front (tuple)",
    "trajectory_steps": "training steps of the evaluated checkpoints (tuple)",
    "trajectory_objectives": "objective vectors at those checkpoints (tuple of tuples)",
}

#: The columns of `fronts` besides the metrics (`FRONT_METRICS`).
FRONT_COLUMNS = {
    "table": "the task table",
    "algorithm": "algorithm label",
    "seed": "seed",
    "complete": "every preference of the grid has a record (ok or failed): ranked",
    "grid": "preferences in the grid",
    "missing": "grid preferences without a record",
    "failed": "failed runs in the front (their points are missing from it)",
    "off_grid": "records of this algorithm and seed at preferences off the grid (in no front)",
    "reference": '"exact" (the task\'s known front), "pinned" (frozen from earlier records) or '
    '"union" (of every complete front\'s points)',
    "reference_hypervolume": "hypervolume of the reference front",
}

#: Per-front metrics, in column order.
FRONT_METRICS = (
    "hypervolume", "score", "igd_plus", "igd", "gd", "cardinality", "sparsity", "spacing",
    "rank_correlation", "inner_product", "tchebycheff", "expected_utility",
    "checkpoint_hypervolume", "steps_to_front", "gradient_evaluations",
    "hypervolume_per_kilo_evaluation", "wall_time",
)  # fmt: skip


def load_results(results_dir: Path | str) -> pd.DataFrame:
    """Every usable record under `results_dir` as a DataFrame with the columns of
    `RECORD_COLUMNS`, sorted by table, algorithm, seed and preference; a warning names each file
    left out and why."""
    records, skipped = read_results(results_dir)
    for path, reason in skipped:
        warnings.warn(f"skipped {path}: {reason}", stacklevel=2)
    return records


def read_results(results_dir: Path | str) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
    """`load_results`' frame, and (path, reason) for every file left out."""
    records, skipped = usable_records(Path(results_dir))
    frame = pd.DataFrame([_row(record) for record in records], columns=list(RECORD_COLUMNS))
    frame = frame.sort_values(["table", "algorithm", "seed", "preference", "key"], kind="stable")
    return frame.reset_index(drop=True), skipped


def usable_records(results_dir: Path) -> tuple[list[RunRecord], list[tuple[Path, str]]]:
    """The records under `results_dir` that can stand in their task's table, and (path, reason)
    for every file left out: unreadable, inconsistent, or not of its task's shape."""
    loaded = load_records(results_dir)
    records, skipped = [], list(loaded.skipped)
    for record in loaded.records:
        mismatch = task_mismatch(record)
        if mismatch is None:
            records.append(record)
        else:
            skipped.append((loaded.paths[record.key], mismatch))
    return records, skipped


def _row(record: RunRecord) -> dict[str, Any]:
    config, space = record.config, record.objective_space
    device = device_class(record)
    label = _label(config.task, config.task_params, _defaults("task", config.task))
    return {
        "key": record.key,
        "table": label if device == "cpu" else f"{label} on {device}",
        "task": config.task,
        "task_params": canonical(config.task_params),
        "paradigm": record.paradigm,
        "device": device,
        "algorithm": algorithm_label(config.algorithm, config.algorithm_params),
        "algorithm_name": config.algorithm,
        "algorithm_params": canonical(config.algorithm_params),
        "seed": config.seed,
        "preference": tuple(config.preference),
        "status": record.status,
        "reason": record.reason,
        "objectives": None if record.objectives is None else tuple(record.objectives),
        "objective_names": tuple(space["names"]),
        "maximize": tuple(space["maximize"]),
        "ideal": tuple(space["ideal"]),
        "nadir": tuple(space["nadir"]),
        "steps": record.cost.steps,
        "gradient_evaluations": record.cost.gradient_evaluations,
        "wall_time_s": record.cost.wall_time_s,
        "shared_training": tuple(
            (shared.key, shared.cost.gradient_evaluations, shared.cost.wall_time_s)
            for shared in record.shared_training
        ),
        "trajectory_steps": tuple(record.trajectory.steps),
        "trajectory_objectives": tuple(tuple(p) for p in record.trajectory.objectives),
    }


def device_class(record: RunRecord) -> str:
    """ "cpu", or the GPUs a record ran on: results from different devices get separate tables."""
    gpus = record.provenance.get("hardware", {}).get("gpus") or []
    return "+".join(sorted(str(g) for g in gpus)) or "cpu"


def canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _label(name: str, params: dict[str, Any], defaults: dict[str, Any] | None) -> str:
    """`name` plus the parameters that differ from the registered defaults."""
    changed = {k: v for k, v in sorted(params.items()) if defaults is None or defaults.get(k) != v}
    return name + "".join(f" {k}={v}" for k, v in changed.items())


def algorithm_label(name: str, params: dict[str, Any]) -> str:
    """`name` plus the parameters that differ from the registered algorithm's defaults."""
    return _label(name, params, _defaults("algorithm", name))


def changed_task_params(task: str, params: dict[str, Any]) -> dict[str, Any]:
    """The task parameters that differ from the registered task's defaults."""
    return _changed(params, _defaults("task", task))


def changed_algorithm_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The algorithm parameters that differ from the registered algorithm's defaults."""
    return _changed(params, _defaults("algorithm", name))


def _changed(params: dict[str, Any], defaults: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in sorted(params.items()) if defaults is None or defaults.get(k) != v}


@cache
def _defaults(kind: str, name: str) -> dict[str, Any] | None:
    """The defaults of the registered task or algorithm `name` as JSON values (None when it is
    not registered)."""
    registry = tasks if kind == "task" else algorithms
    if name not in registry:
        return None
    return json.loads(json.dumps(registry.get(name).hyperparameters()))


def space_of(record) -> ObjectiveSpace:
    """The objective space of a record row (a Series or a named tuple of `load_results`' frame)."""
    get = record.__getitem__ if isinstance(record, pd.Series) else record.__getattribute__
    return ObjectiveSpace(
        tuple(get("objective_names")), tuple(get("maximize")), tuple(get("ideal")),
        tuple(get("nadir")),
    )  # fmt: skip


def task_mismatch(record: RunRecord) -> str | None:
    """Why `record` cannot stand in its registered task's table (its parameters are not valid
    here, or its objective space or paradigm are not the task's), or None; a task this
    installation does not know is taken as the record describes it."""
    if record.config.task not in tasks:
        return None
    expected = _task_shape(record.config.task, canonical(record.config.task_params))
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


# Fronts -----------------------------------------------------------------------------------------


def default_reference_front(task: str, task_params: dict[str, Any]) -> np.ndarray | None:
    """The registered task's exact front, or None when the task is unknown here or has none."""
    if task not in tasks:
        return None
    return tasks.get(task)(**task_params).pareto_front()


def default_front_hypervolume(task: str, task_params: dict[str, Any]) -> float | None:
    """The registered task's exact front hypervolume from its closed form, or None."""
    if task not in tasks:
        return None
    return tasks.get(task)(**task_params).front_hypervolume()


def grid_of(n_objectives: int, partitions: int | None = None) -> set[tuple[float, ...]]:
    """The preference grid a complete front covers, as rounded tuples (`on_grid`)."""
    return {rounded_preference(w) for w in simplex_lattice(n_objectives, partitions)}


def rounded_preference(preference) -> tuple[float, ...]:
    return tuple(round(float(w), 9) for w in preference)


def mark_fronts(records: pd.DataFrame, partitions: int | None = None) -> pd.DataFrame:
    """`records` with three more columns: `grid` (the size of its grid), `on_grid` (its
    preference is on the grid) and `complete` (it is on the grid and its front, the algorithm's
    records of that table and seed, has a record at every grid preference)."""
    marked = records.copy()
    m = marked["objective_names"].map(len)
    grids = {n: grid_of(n, partitions) for n in sorted(set(m))}
    rounded = marked["preference"].map(rounded_preference)
    marked["grid"] = m.map(lambda n: len(grids[n])).astype(int)
    marked["on_grid"] = [w in grids[n] for w, n in zip(rounded, m)]
    on = marked["on_grid"]
    covered = rounded[on].groupby([marked.loc[on, k] for k in FRONT_KEYS]).transform("nunique")
    marked["complete"] = False
    marked.loc[on, "complete"] = covered == marked.loc[on, "grid"]
    return marked


@dataclass(frozen=True)
class PinnedReference:
    """A reference set frozen from earlier records (`references`): raw points and where they
    came from."""

    raw: np.ndarray  # (n, m), raw units
    provenance: str


@dataclass(frozen=True)
class Reference:
    """A table's reference front: "exact" (the task's known front), "pinned" (a reference set
    frozen from earlier records, `PinnedReference`) or "union" (the non-dominated points of
    every complete front in the table, all seeds). Its hypervolume is the task's closed form
    where it has one (`closed_form`), else that of `points` (a sample of the front falls short
    of the whole front's: 4% on DTLZ2 with 325 points)."""

    kind: str
    points: np.ndarray  # normalised minimisation space, (n, m); empty when there is none
    raw: np.ndarray  # the same points in raw units
    description: str
    closed_form: float | None = None

    @cached_property
    def hypervolume(self) -> float:
        if self.closed_form is not None:
            return self.closed_form
        return hypervolume(self.points) if len(self.points) else math.nan


def reference_of(
    table: pd.DataFrame,
    reference_front: ReferenceFront = default_reference_front,
    pinned: PinnedReference | None = None,
) -> Reference:
    """The reference front of one table's marked records (`mark_fronts`): the exact front
    where the task has one, else `pinned` where given, else the union of its complete fronts."""
    first = table.iloc[0]
    space = space_of(first)
    exact = reference_front(first["task"], json.loads(first["task_params"]))
    if exact is not None:
        exact = np.asarray(exact, dtype=np.float64)
        doc = _front_doc(first["task"])
        closed_form = (
            default_front_hypervolume(first["task"], json.loads(first["task_params"]))
            if reference_front is default_reference_front
            else None
        )
        return Reference(
            "exact", space.normalize(exact), exact,
            f"the exact front, {len(exact)} points" + (f" ({doc})" if doc else ""), closed_form,
        )  # fmt: skip
    if pinned is not None:
        if pinned.raw.shape[1:] != (space.n_objectives,):
            raise ConfigError(
                f"the pinned reference set of table {first['table']!r} has points of "
                f"{pinned.raw.shape[1:]} objectives, its records {space.n_objectives}: refreeze it "
                "(moabench leaderboard --freeze-references)"
            )
        return Reference(
            "pinned", nondominated(space.normalize(pinned.raw)), pinned.raw,
            f"the pinned reference set, {len(pinned.raw)} points, {pinned.provenance}",
        )  # fmt: skip
    ranked = table[table["complete"] & (table["status"] == "ok")]
    raw = np.asarray(list(ranked["objectives"]), dtype=np.float64).reshape(-1, space.n_objectives)
    normalised = space.normalize(raw)
    raw = np.unique(raw[nondominated_mask(normalised)], axis=0)
    return Reference(
        "union", nondominated(normalised), raw,
        f"the union of every algorithm's complete fronts (all seeds): {len(raw)} "
        "non-dominated points",
    )  # fmt: skip


def _front_doc(task: str) -> str:
    """How the registered task samples its front: the first line of its `pareto_front`
    docstring, less a closing "(... points)" (the count is stated beside it)."""
    doc = (tasks.get(task).pareto_front.__doc__ or "").strip() if task in tasks else ""
    first = doc.splitlines()[0].rstrip(".") if doc else ""
    return re.sub(r"\s*\([^()]*points\)$", "", first)


def fronts(
    records: pd.DataFrame,
    reference_front: ReferenceFront = default_reference_front,
    partitions: int | None = None,
) -> pd.DataFrame:
    """One row per front (table, algorithm, seed) of `load_results`' frame: the columns of
    `FRONT_COLUMNS` and the metrics of `FRONT_METRICS`, partial fronts included (`complete`
    False; their metrics are of the points they have)."""
    marked = mark_fronts(records, partitions)
    references = {
        table: reference_of(group, reference_front) for table, group in marked.groupby("table")
    }
    return front_frame(marked, references)


def front_frame(marked: pd.DataFrame, references: dict[str, Reference]) -> pd.DataFrame:
    """`fronts` from records already marked (`mark_fronts`) and their tables' references."""
    members: dict[tuple, list] = defaultdict(list)
    for record in marked.itertuples(index=False):
        members[(record.table, record.algorithm, record.seed)].append(record)
    rows = []
    for (table, algorithm, seed), group in sorted(members.items(), key=lambda item: item[0]):
        reference = references[table]
        on_grid = [r for r in group if r.on_grid]
        grid = group[0].grid
        row = {
            "table": table,
            "algorithm": algorithm,
            "seed": int(seed),
            "complete": any(r.complete for r in group),
            "grid": grid,
            "missing": grid - len({rounded_preference(r.preference) for r in on_grid}),
            "failed": sum(r.status != "ok" for r in on_grid),
            "off_grid": len(group) - len(on_grid),
            "reference": reference.kind,
            "reference_hypervolume": reference.hypervolume,
        }
        ok = [r for r in on_grid if r.status == "ok"]
        rows.append(row | _front_values(ok, space_of(group[0]), reference))
    frame = pd.DataFrame(rows, columns=[*FRONT_COLUMNS, *FRONT_METRICS])
    return frame.astype({"complete": bool})  # a boolean mask even when empty


def _front_values(front: list, space: ObjectiveSpace, reference: Reference) -> dict[str, float]:
    """Every metric of one front (its ok records, as rows of `mark_fronts`), with cost and score."""
    m = space.n_objectives
    points = space.normalize(
        np.asarray([r.objectives for r in front], dtype=np.float64).reshape(-1, m)
    )
    preferences = np.asarray([r.preference for r in front], dtype=np.float64).reshape(-1, m)
    values = front_metrics(points, preferences, reference.points if len(reference.points) else None)
    steps = [step for r in front for step in r.trajectory_steps]
    checkpoints = [point for r in front for point in r.trajectory_objectives]
    values["checkpoint_hypervolume"], values["steps_to_front"] = (
        checkpoint_front(np.asarray(steps), space.normalize(checkpoints))
        if checkpoints
        else (math.nan, math.nan)
    )
    # the front's compute: every run's own, plus each shared training (a steerable method's
    # experts) once, however many of the front's records point to it
    shared = {key: cost for r in front for key, *cost in r.shared_training}
    evaluations = float(sum(r.gradient_evaluations for r in front))
    evaluations += float(sum(cost[0] for cost in shared.values()))
    values["gradient_evaluations"] = evaluations
    values["hypervolume_per_kilo_evaluation"] = (
        1000 * values["hypervolume"] / evaluations if evaluations else math.nan
    )
    values["wall_time"] = float(sum(r.wall_time_s for r in front))
    values["wall_time"] += float(sum(cost[1] for cost in shared.values()))
    hv_reference = reference.hypervolume
    values["score"] = values["hypervolume"] / hv_reference if hv_reference > 0 else math.nan
    return values

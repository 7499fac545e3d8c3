"""Run records -> per-task standings (mean and 95% bootstrap interval over seeds) -> LEADERBOARD.md.

A *front* is the set of final points of one algorithm configuration on one task and one seed,
across the preference grid. Metrics are computed per front and then summarised over seeds. The
output is a pure function of the records: no timestamps, no wall time (it stays in the records),
fixed bootstrap seed and number formatting, so the same records give byte-identical files.
"""

from __future__ import annotations

import difflib
import json
import math
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import bootstrap

from moabench.algorithm import Paradigm, algorithms
from moabench.metrics import checkpoint_front, front_metrics, nondominated
from moabench.records import RunRecord, load_records
from moabench.site import write_site
from moabench.task import ObjectiveSpace, tasks

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


@dataclass
class LeaderboardResult:
    tables: list[TaskTable]
    skipped: list[tuple[Path, str]]


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


def build_leaderboard(
    results_dir: Path,
    out_dir: Path,
    reference_front: ReferenceFront = default_reference_front,
    plots: bool = True,
) -> LeaderboardResult:
    """Read every record under `results_dir`; write `out_dir/LEADERBOARD.md`, the web page
    `out_dir/site/index.html` and the front plots `out_dir/plots/` (where a PNG that no table
    draws any more is removed)."""
    loaded = load_records(results_dir)
    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for record in loaded.records:
        params = record.config.task_params | {"device": device_class(record)}
        groups[(record.config.task, _canonical(params))].append(record)

    from moabench.plots import plot_fronts  # matplotlib: loaded only when a leaderboard is drawn

    out_dir = Path(out_dir)
    tables = []
    for (task, params), records in sorted(groups.items()):
        task_params = json.loads(params)
        device = task_params.pop("device")
        label = _label(task, task_params, _defaults(tasks, task))
        label += "" if device == "cpu" else f" on {device}"
        plot_name = f"plots/{label.replace(' ', '_').replace('=', '-')}.png"
        table, points = task_table(label, records, reference_front, plot_name)
        tables.append(table)
        if plots and table.space.n_objectives in (2, 3):
            exact = reference_front(task, task_params)
            plot_fronts(
                f"{label}: final points by preference",
                table.space,
                points,
                exact,
                out_dir / plot_name,
            )
    if plots:
        for stale in _plot_files(out_dir) - _drawn_plots(tables):
            (out_dir / stale).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "LEADERBOARD.md").write_text(render_markdown(tables))
    write_site(tables, out_dir)
    return LeaderboardResult(tables, loaded.skipped)


def render_markdown(tables: list[TaskTable]) -> str:
    lines = [
        "# moabench leaderboard",
        "",
        "Generated by `moabench leaderboard` from the run records; do not edit by hand.",
        "Per task, algorithms are ranked by hypervolume (normalised minimisation space, reference",
        "point 1.1 per objective). Cells: mean over seeds [95% percentile-bootstrap interval].",
        "`≈` marks an algorithm whose hypervolume interval overlaps the leader's (not ranked apart).",
        "IGD, IGD+ and GD are against the exact front where the task has one, otherwise against the",
        "union of every algorithm's non-dominated points. Costs are per front (all preferences of",
        "one seed): gradient evaluations, hypervolume per 1,000 of them, and wall time as recorded",
        "on the machine that ran the records (see their provenance).",
        "",
    ]
    for table in tables:
        lines += _render_table(table)
    return "\n".join(lines).rstrip() + "\n"


def _render_table(table: TaskTable) -> list[str]:
    objectives = ", ".join(
        f"{n} ({'max' if up else 'min'})" for n, up in zip(table.space.names, table.space.maximize)
    )
    reference = "exact front" if table.reference == "exact" else "union of non-dominated points"
    lines = [
        f"## {table.label}",
        "",
        f"Paradigm: {table.paradigm}. Objectives: {objectives}. Distances against the {reference}.",
        f"Normalisation: ideal {list(table.space.ideal)}, nadir {list(table.space.nadir)}.",
        "",
        "| rank | algorithm | " + " | ".join(COLUMNS.values()) + " | seeds | failed |",
        "|---|---|" + "---|" * len(COLUMNS) + "---|---|",
    ]
    ranked = [row for row in table.rows if row.supported and row.seeds > 0]
    leader = ranked[0].summary["hypervolume"] if ranked else None
    rank = 0
    for row in table.rows:
        if not row.supported:
            cells = ["n/a"] * len(COLUMNS)
            lines.append(f"| - | {row.algorithm} | " + " | ".join(cells) + " | n/a | n/a |")
            continue
        if row.seeds > 0:
            rank += 1
            hv = row.summary["hypervolume"]
            tie = "≈" if row is not ranked[0] and leader is not None and hv.overlaps(leader) else ""
            position = f"{tie}{rank}"
        else:
            position = "-"
        cells = [str(row.summary[metric]) for metric in COLUMNS]
        lines.append(
            f"| {position} | {row.algorithm} | "
            + " | ".join(cells)
            + f" | {row.seeds} | {len(row.failed)}/{row.runs} |"
        )
    lines += ["", f"![{table.label} fronts]({table.plot})", ""]
    failures = [record for row in table.rows for record in row.failed]
    if failures:
        lines += ["<details><summary>failed runs</summary>", ""]
        for record in sorted(failures, key=lambda r: (r.config.algorithm, r.key)):
            lines.append(
                f"- `{record.key}` {record.config.algorithm} w={record.config.preference} "
                f"seed={record.config.seed}: {record.reason}"
            )
        lines += ["", "</details>", ""]
    return lines


def _drawn_plots(tables: list[TaskTable]) -> set[str]:
    return {table.plot for table in tables if table.space.n_objectives in (2, 3)}


def _plot_files(out_dir: Path) -> set[str]:
    return {f"plots/{path.name}" for path in (Path(out_dir) / "plots").glob("*.png")}


GENERATED_PAGES = ("LEADERBOARD.md", "site/index.html")


def check_leaderboard(
    results_dir: Path,
    committed_dir: Path,
    reference_front: ReferenceFront = default_reference_front,
) -> list[str]:
    """Regenerate into a temporary folder; return what differs from `committed_dir` (empty when it
    is up to date): diff lines of LEADERBOARD.md and of the web page, and the plots that are
    missing or that no table draws. Plot pixels are not compared (they depend on matplotlib's
    version and fonts)."""
    committed_dir = Path(committed_dir)
    differences: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        result = build_leaderboard(results_dir, Path(scratch), reference_front, plots=False)
        for name in GENERATED_PAGES:
            committed = committed_dir / name
            old = committed.read_text() if committed.exists() else ""
            fresh = (Path(scratch) / name).read_text()
            differences += difflib.unified_diff(
                old.splitlines(), fresh.splitlines(), str(committed), "regenerated", lineterm=""
            )
    drawn, present = _drawn_plots(result.tables), _plot_files(committed_dir)
    differences += [f"missing plot: {committed_dir / name}" for name in sorted(drawn - present)]
    differences += [
        f"stale plot (no table draws it): {committed_dir / name}"
        for name in sorted(present - drawn)
    ]
    return differences

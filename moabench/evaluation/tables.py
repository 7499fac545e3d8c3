"""Per-task standings, computed from the fronts of `frame.fronts`: one `TaskTable` per task table
(task, the task parameters that differ from its defaults, device).

- Only complete fronts are ranked (`frame`: every preference of the grid has a record). An
  algorithm's row summarises its complete fronts, one per seed; its partial fronts are listed
  apart with how many preferences they miss, and an algorithm with none complete is not ranked.
- Every metric is summarised over seeds as its mean and 95% Student t interval
  (`stats.t_interval`). Algorithms are ordered by mean hypervolume; sparsity and spacing are
  descriptive columns and never rank.
- The leader (highest mean hypervolume) is compared with every other ranked algorithm on the
  seeds both have complete, paired by seed (`stats.paired_t_test`), with Holm's adjustment over the
  table's comparisons (`stats.holm`): a *statistical tie* is a Holm-adjusted p-value of at least
  `ALPHA` (or fewer than two shared seeds). A *practical tie* is a mean difference within
  `PRACTICAL_TIE` (0.5%) of the leader's hypervolume, whatever the test says.

The tables are a pure function of the records, computed once and rendered by `markdown`, `site`,
`exports` and `plots`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from moabench.core.algorithm import Paradigm, algorithms
from moabench.core.task import ObjectiveSpace
from moabench.evaluation.frame import (
    Reference,
    ReferenceFront,
    changed_algorithm_params,
    changed_task_params,
    default_reference_front,
    front_frame,
    mark_fronts,
    reference_of,
    space_of,
)
from moabench.evaluation.stats import Interval, holm, paired_t_test, t_interval

ALPHA = 0.05
PRACTICAL_TIE = 0.005

COLUMNS = {  # metric -> column header, in table order
    "hypervolume": "HV",
    "score": "HV / reference HV",
    "igd_plus": "IGD+",
    "igd": "IGD",
    "gd": "GD",
    "cardinality": "cardinality",
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
class Failure:
    key: str
    algorithm: str
    preference: tuple[float, ...]
    seed: int
    reason: str


@dataclass(frozen=True)
class Comparison:
    """One algorithm against the leader on the seeds both have complete, paired by seed."""

    difference: Interval  # this algorithm's HV minus the leader's: mean and 95% paired t interval
    p_value: float  # two-sided paired t-test (nan with fewer than two shared seeds)
    p_holm: float  # Holm-adjusted over the table's comparisons
    statistical_tie: bool
    practical_tie: bool

    @property
    def marks(self) -> str:
        """ "≈" for a statistical tie, "<0.5%" for a practical one (`LEGEND`)."""
        return " ".join(["≈"] * self.statistical_tie + ["<0.5%"] * self.practical_tie)


def p_text(p: float) -> str:
    """A p-value for a table: two significant digits, "<0.0001" below that, "-" for none."""
    if math.isnan(p):
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.2g}"


#: Columns of the standings table besides rank, algorithm and the comparison with the leader.
STANDING_COLUMNS = ("hypervolume", "score", "igd_plus", "cardinality")

#: How to read a task table: one entry per paragraph, plain text (the renderers add markup).
LEGEND = (
    "Only complete fronts are ranked. A front is one algorithm's final points on one seed across "
    "the preference grid (the simplex lattice of moabench sweep: 11 preferences for two "
    "objectives, 15 for three); it is complete when every preference has a record, ok or failed "
    "(a failed run's point is missing from its front, which lowers its HV). Partial fronts (a "
    "one-off moabench run, an unfinished sweep) are listed under their table with the number of "
    "preferences they miss, and never ranked; a row's seeds are its complete fronts.",
    "HV: hypervolume of a front in the normalised minimisation space (ideal 0, nadir 1, "
    "reference point 1.1 per objective). Cells are mean over seeds [95% Student t interval: "
    "mean ± t(0.975, n-1) s/√n], the mean alone for a single seed. Rows are ordered by mean HV.",
    "vs leader: each algorithm against the leader (highest mean HV) on the seeds both have "
    "complete, paired by seed, since seeds share starting points and reference policies: the "
    "mean HV difference with its 95% paired t interval, and the two-sided paired t-test's "
    "p-value, Holm-adjusted over the table's comparisons (p Holm). A paired t-test rather than "
    "Wilcoxon's signed-rank test, whose p-value cannot fall below 2/2^n (0.0625 at 5 seeds).",
    "tie: ≈ where the Holm-adjusted p-value is 0.05 or more (or fewer than two seeds are shared): "
    "the records do not separate the algorithm from the leader at a family-wise 5% level. "
    "<0.5% where the mean difference is within 0.5% of the leader's HV: a practical tie, "
    "whatever the test says. A rank with either mark is no evidence of an order; nor are the "
    "ranks below the leader among themselves, which are not tested against each other.",
    "Reference front: the task's exact front where it has one (its sampling is stated per table), "
    "else the union of every algorithm's complete fronts. IGD, IGD+ and GD are measured against "
    "it, and HV / reference HV is the score that the across-task aggregates compare.",
    "cardinality: the number of distinct non-dominated points of a front. Sparsity (PGMORL) and "
    "spacing (Schott) describe a front's shape and are never used to rank: an algorithm that "
    "ignores the preference reaches one point (cardinality 1), where both read 0, as for a "
    "perfect front.",
    "Costs are per front (all preferences of one seed): gradient evaluations, HV per 1,000 of "
    "them, and wall time as recorded on the machine that ran the records (see their "
    "provenance).",
)


@dataclass
class Row:
    algorithm: str
    config: dict[str, Any] = field(default_factory=dict)  # the algorithm's resolved parameters
    supported: bool = True
    summary: dict[str, Interval] = field(default_factory=dict)  # over complete fronts
    seeds: int = 0  # complete fronts (one per seed): what the row summarises
    partial: int = 0  # seeds whose front is partial (not counted)
    runs: int = 0
    failed: list[Failure] = field(default_factory=list)
    rank: int | None = None
    comparison: Comparison | None = None  # None for the leader and unranked rows


@dataclass(frozen=True)
class PartialFront:
    algorithm: str
    seed: int
    missing: int  # grid preferences without a record
    off_grid: int  # records at preferences off the grid


@dataclass
class TaskTable:
    label: str
    task: str
    task_params: dict[str, Any]
    paradigm: str
    group: str  # the across-task aggregate it belongs to (`aggregates`)
    space: ObjectiveSpace
    rows: list[Row]
    reference: Reference
    grid: int  # preferences in the grid
    partial: list[PartialFront]
    plot: str  # small multiples, one panel per algorithm
    overlay: str  # every algorithm's front on one set of axes
    compute: str  # hypervolume against the front's training compute

    @property
    def ranked(self) -> list[Row]:
        return [row for row in self.rows if row.rank is not None]


@dataclass
class Standings:
    records: pd.DataFrame  # `frame.load_results`' frame with `on_grid` and `complete`
    fronts: pd.DataFrame  # `frame.fronts`: one row per front
    tables: list[TaskTable]


def standings(
    records: pd.DataFrame,
    reference_front: ReferenceFront = default_reference_front,
    partitions: int | None = None,
) -> Standings:
    """Fronts and per-task tables of `records` (`frame.load_results`), tables in label order."""
    marked = mark_fronts(records, partitions)
    groups = dict(list(marked.groupby("table", sort=True)))
    references = {label: reference_of(group, reference_front) for label, group in groups.items()}
    per_front = front_frame(marked, references)
    tables = [
        task_table(group, per_front[per_front["table"] == label], references[label])
        for label, group in groups.items()
    ]
    return Standings(marked, per_front, tables)


def reference_text(reference: Reference) -> str:
    """The sentence that states a table's reference front and its HV."""
    if not len(reference.points):
        return (
            "Reference front: none yet (it is the union of every algorithm's complete fronts, "
            "and no front is complete), so no HV / reference HV."
        )
    how = " (the whole front's, from its closed form)" if reference.closed_form is not None else ""
    return f"Reference front: {reference.description}; its HV{how} is {reference.hypervolume:.4g}."


def table_notes(table: TaskTable) -> list[str]:
    """Sentences that explain a table that is empty or thin, and what to run to fill it."""
    notes = []
    if not table.ranked:
        notes.append(
            "Nothing is ranked yet: no front is complete (a record at every one of the "
            f"{table.grid} preferences for one seed)."
        )
    elif all(row.seeds == 1 for row in table.ranked):
        notes.append(
            "One complete front per algorithm: cells show the mean alone, with no interval and "
            "no test (sweep more seeds, such as --seeds 0,1,2, for them)."
        )
    if table.partial:
        notes.append("The sweep that completes the partial fronts:")
    return notes


def completion_command(table: TaskTable) -> str | None:
    """The `moabench sweep` that completes the table's partial fronts (their algorithms, seeds
    and parameters over the whole preference grid), or None when it has none."""
    if not table.partial:
        return None
    labels = {f.algorithm for f in table.partial}
    return sweep_command([table], labels, sorted({f.seed for f in table.partial}))


def sweep_command(tables: Sequence[TaskTable], labels: set[str], seeds: Sequence[int]) -> str:
    """The `moabench sweep` of the algorithms `labels` (with their parameters) on the tasks of
    `tables` (with theirs) at `seeds` (the standard seeds when empty)."""
    configs = {row.algorithm: row.config for table in tables for row in table.rows}
    names = sorted({configs[label]["algorithm"] for label in labels})
    params = {
        key: value
        for label in labels
        for key, value in changed_algorithm_params(
            configs[label]["algorithm"],
            {k: v for k, v in configs[label].items() if k != "algorithm"},
        ).items()
    }
    task_params = {
        key: value
        for table in tables
        for key, value in changed_task_params(table.task, table.task_params).items()
    }
    tasks = list(dict.fromkeys(table.task for table in tables))
    words = [
        "moabench sweep", f"--algo {','.join(names)}", f"--task {','.join(tasks)}",
        *([f"--seeds {','.join(map(str, seeds))}"] if seeds else []),
        *(f"--param {k}={_shell_value(v)}" for k, v in sorted(params.items())),
        *(f"--task-param {k}={_shell_value(v)}" for k, v in sorted(task_params.items())),
    ]  # fmt: skip
    return " ".join(words)


def _shell_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def task_table(records: pd.DataFrame, fronts: pd.DataFrame, reference: Reference) -> TaskTable:
    """The standings of every algorithm configuration on one task table, from its marked records
    and its fronts."""
    first = records.iloc[0]
    label, paradigm = first["table"], first["paradigm"]
    task_params = json.loads(first["task_params"])
    by_algorithm = dict(list(fronts.groupby("algorithm", sort=True)))
    rows = [
        _row(algorithm, group, by_algorithm[algorithm])
        for algorithm, group in records.groupby("algorithm", sort=True)
    ]
    _rank(rows, fronts)
    for name in algorithms.names():  # algorithms that cannot run on this task show as n/a
        if not algorithms.get(name).supports(Paradigm(paradigm)):
            rows.append(Row(algorithm=name, supported=False, config={"algorithm": name}))
    partial = fronts[~fronts["complete"]]
    slug = label.replace(" ", "_").replace("=", "-")
    return TaskTable(
        label=label,
        task=first["task"],
        task_params=task_params,
        paradigm=paradigm,
        group=_group(first["task"], task_params, paradigm, first["device"]),
        space=space_of(first),
        rows=rows,
        reference=reference,
        grid=int(fronts["grid"].iloc[0]) if len(fronts) else 0,
        partial=[
            PartialFront(r.algorithm, int(r.seed), int(r.missing), int(r.off_grid))
            for r in partial.itertuples()
        ],
        plot=f"plots/{slug}.png",
        overlay=f"plots/{slug}_overlay.png",
        compute=f"plots/{slug}_compute.png",
    )


def _group(task: str, task_params: dict[str, Any], paradigm: str, device: str) -> str:
    """The aggregate a table belongs to: its paradigm, with the task parameters other than the
    paradigm that differ from the defaults, and the device where it is not the CPU."""
    changed = changed_task_params(task, task_params)
    variant = "".join(f" {k}={v}" for k, v in changed.items() if k != "paradigm")
    return paradigm + variant + ("" if device == "cpu" else f" on {device}")


def _row(algorithm: str, records: pd.DataFrame, fronts: pd.DataFrame) -> Row:
    first = records.iloc[0]
    complete = fronts[fronts["complete"]]
    values = complete[list(COLUMNS)].to_numpy(dtype=np.float64)
    failed = records[records["status"] != "ok"]
    return Row(
        algorithm=algorithm,
        config={"algorithm": first["algorithm_name"]} | json.loads(first["algorithm_params"]),
        summary={metric: t_interval(values[:, j]) for j, metric in enumerate(COLUMNS)},
        seeds=len(complete),
        partial=len(fronts) - len(complete),
        runs=len(records),
        failed=[
            Failure(r.key, r.algorithm_name, r.preference, int(r.seed), r.reason)
            for r in failed.itertuples()
        ],
    )


def _rank(rows: list[Row], fronts: pd.DataFrame) -> None:
    """Order `rows` (ranked ones by mean hypervolume, then those without a complete front), give
    ranks, and compare each ranked row with the leader."""
    rows.sort(key=lambda r: (r.seeds == 0, -_mean_hv(r) if r.seeds else 0.0, r.algorithm))
    ranked = [row for row in rows if row.seeds > 0]
    for rank, row in enumerate(ranked, start=1):
        row.rank = rank
    if len(ranked) < 2:
        return
    hv = (
        fronts[fronts["complete"]]
        .pivot_table(index="seed", columns="algorithm", values="hypervolume", aggfunc="first")
        .sort_index()
    )
    leader = ranked[0]
    tests = []
    for row in ranked[1:]:
        shared = hv[[row.algorithm, leader.algorithm]].dropna()
        if shared.empty:
            difference = Interval(_mean_hv(row) - _mean_hv(leader), math.nan, math.nan, 0)
            tests.append((difference, math.nan))
        else:
            test = paired_t_test(shared[row.algorithm], shared[leader.algorithm])
            tests.append((test.difference, test.p_value))
    adjusted = holm([p for _, p in tests])
    for row, (difference, p_value), p_holm in zip(ranked[1:], tests, adjusted):
        row.comparison = Comparison(
            difference=difference,
            p_value=p_value,
            p_holm=float(p_holm),
            statistical_tie=bool(np.isnan(p_holm) or p_holm >= ALPHA),
            practical_tie=abs(difference.mean) <= PRACTICAL_TIE * _mean_hv(leader),
        )


def _mean_hv(row: Row) -> float:
    return row.summary["hypervolume"].mean if row.seeds else math.nan

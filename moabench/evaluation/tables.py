"""Per-task standings, computed from the fronts of `frame.fronts`: one `TaskTable` per task table
(task, the task parameters that differ from its defaults, device).

- Only complete fronts are ranked (`frame`: every preference of the grid has a record). An
  algorithm's row summarises its complete fronts, one per seed; its partial fronts are listed
  apart with how many preferences they miss, and an algorithm with none complete is not ranked.
- Every metric is summarised over seeds as its mean and 95% Student t interval
  (`stats.t_interval`). Algorithms are ordered by mean hypervolume; sparsity and spacing are
  descriptive columns and never rank.
- The leader (highest mean hypervolume) is compared with every other ranked algorithm on the
  seeds both have complete, paired by seed (`stats.compare`): the sign-flip permutation test
  with the Hodges-Lehmann estimate decides, Holm-adjusted over the table's comparisons
  (`stats.holm`), the paired t-test beside it. *Not separated* (≈) is a Holm-adjusted sign-flip
  p-value of at least `ALPHA` (or fewer than two shared seeds); *equivalent* (=) a TOST p-value
  below `ALPHA` for a margin of `EQUIVALENCE_MARGIN` (1%) of the reference front's HV. Where
  the differences have no spread over seeds they are exact: no p-value, = within the margin.
- Each table ranks twice (`rankings`): by hypervolume and by the per-preference utility, each
  with P(best), rank intervals and the set not separated from the best; `pointwise` compares
  every two algorithms' models at the same preference, and `flags` marks degenerate results.

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
    PinnedReference,
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
from moabench.evaluation.flags import still_runs, zero_seeds
from moabench.evaluation.pointwise import pointwise_pairs
from moabench.evaluation.rankings import (
    UTILITIES,
    Ranking,
    all_pairs,
    comparisons,
    ranking,
    seed_matrix,
    with_utilities,
)
from moabench.evaluation.stats import Interval, PairedComparison, t_interval

ALPHA = 0.05
#: The TOST margin of "equivalent", as a fraction of the reference front's HV.
EQUIVALENCE_MARGIN = 0.01

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
    "tchebycheff": "max w_j f_j",
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
    """One algorithm against the leader on the seeds both have complete, paired by seed (this
    algorithm's HV minus the leader's)."""

    test: PairedComparison
    p_holm: float  # the sign-flip test's, Holm-adjusted over the table's comparisons
    p_holm_t: float  # the paired t-test's, likewise

    @property
    def difference(self) -> Interval:
        return self.test.difference

    @property
    def separated(self) -> bool:
        """The records separate it from the leader: an exact non-zero difference, or a
        Holm-adjusted sign-flip p-value below `ALPHA`."""
        if self.test.exact:
            return self.difference.mean != 0
        return bool(self.p_holm < ALPHA)

    @property
    def equivalent(self) -> bool:
        """Within the margin of the leader: TOST p below `ALPHA` (exact: inside the margin)."""
        return bool(self.test.p_equivalence < ALPHA)

    @property
    def marks(self) -> str:
        """ "≈" not separated from the leader, "=" equivalent to it (`LEGEND`)."""
        return " ".join(["≈"] * (not self.separated) + ["="] * self.equivalent)


def p_text(p: float) -> str:
    """A p-value for a table: two significant digits, "<0.0001" below that, "-" for none."""
    if math.isnan(p):
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.2g}"


def comparison_cells(comparison: Comparison | None) -> list[str]:
    """The cells of a row's comparison with the leader (`COMPARISON_HEADER`)."""
    if comparison is None:
        return ["leader", "", "", "", ""]
    if comparison.test.exact:
        p_values = ["exact", "exact"]
    else:
        p_values = [p_text(comparison.p_holm), p_text(comparison.p_holm_t)]
    return [
        str(comparison.difference), f"{comparison.test.hodges_lehmann:.4g}", *p_values,
        comparison.marks,
    ]  # fmt: skip


def uncertainty_cells(ranking: Ranking, algorithm: str) -> list[str]:
    """P(best), the rank interval and the best-set mark of one algorithm (`RANK_HEADER`)."""
    low, high = ranking.rank_interval[algorithm]
    return [
        f"{ranking.p_best[algorithm]:.2f}",
        str(low) if low == high else f"{low}-{high}",
        "✓" if algorithm in ranking.best else "",
    ]


def coverage_text(pair) -> str:
    """A row of `pointwise_pairs` as "C(a, b) (share of (w, seed) where a dominates b)"."""
    return f"{pair.coverage:.2f} ({pair.a_dominates / pair.compared:.0%})"


def gain_rows(table: TaskTable) -> list[list[str]]:
    """Language tables: per algorithm, its models against the utility leader's at the same
    (w, seed) (`pointwise`): per objective the mean gain [95% t] (positive: better than the
    leader's), then at how many (w, seed) it dominates the leader's model and is dominated by
    it; [] for an analytic table or one algorithm. Header: `gain_header`."""
    leader = table.rankings["weighted_sum_utility"].order[:1]
    if table.paradigm == "analytic" or table.pointwise.empty or not leader:
        return []
    against = table.pointwise[table.pointwise["b"] == leader[0]].set_index("a")
    rows = []
    for name in table.rankings["weighted_sum_utility"].order[1:]:
        pair = against.loc[name]
        gains = [
            format(Interval(pair[f"gain_{o}"], pair[f"gain_{o}_low"], pair[f"gain_{o}_high"], 0))
            for o in table.space.names
        ]
        counts = [f"{pair.a_dominates}/{pair.compared}", f"{pair.b_dominates}/{pair.compared}"]
        rows.append([name, *gains, *counts])
    return rows


def gain_header(table: TaskTable) -> list[str]:
    """The header of `gain_rows`."""
    return [
        "algorithm", *(f"Δ{name} [95% t]" for name in table.space.names),
        "dominates the leader's", "dominated by it",
    ]  # fmt: skip


#: Headers of `comparison_cells` and `uncertainty_cells`.
COMPARISON_HEADER = (
    "vs leader: ΔHV [95% paired t]", "HL Δ", "p Holm", "p Holm (t)", "tie",
)  # fmt: skip
RANK_HEADER = ("P(best)", "rank [95%]", "best set")


def flag_notes(table: TaskTable) -> list[str]:
    """Sentences that flag degenerate results in a table (`flags`)."""
    notes = []
    if table.deterministic:
        notes.append(
            "Deterministic: seeds add no variance (every algorithm's HV spreads less than "
            "1e-4 over seeds), so differences are exact and no p-value is given."
        )
    if table.zero_seeds:
        seeds = ", ".join(map(str, table.zero_seeds))
        notes.append(f"Every algorithm scores HV 0 on seed {seeds} (all points outside the box).")
    for algorithm, (still, runs) in table.still.items():
        notes.append(
            f"{algorithm}: {still} of {runs} runs never leave their start (the trained model "
            "is the starting one at every checkpoint)."
        )
    return notes


#: Columns of the standings table besides rank, algorithm and the comparison with the leader.
STANDING_COLUMNS = ("hypervolume", "score", "cardinality")

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
    "Two rankings answer two questions. By HV: which algorithm's models, one per preference, "
    "cover the front best? A preference-blind algorithm (one model whatever w; cardinality 1) "
    "ranks low here by construction. By utility: which algorithm gives a user the best model "
    "for their preference w? Each grid preference's record (the model trained or steered for "
    "w; a preference-blind algorithm's one model at every w) scores U_ws = 1 - w·f (weighted "
    "sum) and U_tch = 1 - max_j w_j f_j (Tchebycheff) in the normalised space, averaged over "
    "the grid; rows are ordered by U_ws.",
    "P(best) and rank [95%]: the seeds resampled with replacement (jointly, since they are "
    "shared; 2,000 resamples, fixed seed): the share of resamples in which the algorithm has "
    "the best mean, and the 2.5-97.5% range of its rank. With few seeds a resample repeats "
    "seeds, so these describe how fragile the order is rather than give exact probabilities. "
    "best set ✓: the algorithms not separated from the best by multiple comparisons with the "
    "best (Hsu 1984): one drops out when another beats it on their shared seeds by more than "
    "the one-sided paired t bound, Bonferroni over its k-1 comparisons; the set holds the "
    "truly best algorithm with 95% confidence if paired differences are roughly normal. MCB "
    "rather than tests against the observed leader, whose lead is itself uncertain.",
    "vs leader: each algorithm against the leader on the seeds both have complete, paired by "
    "seed (seeds share starting points and reference policies): the mean HV difference with "
    "its 95% paired t interval, and the Hodges-Lehmann estimate (median of the Walsh "
    "averages). p Holm: the paired permutation test, which flips the differences' signs over "
    "all 2^n ways and compares their signed-rank sum (exact Wilcoxon), Holm-adjusted over the "
    "table's comparisons; it is used because HV is bounded and falls to 0 when a front leaves "
    "the box, so one lost seed can outweigh nine won ones in a mean, and the t-test's normality "
    "is rejected on several tables. Its p-value cannot fall below 2/2^n (0.0625 at 5 seeds, "
    "0.008 at 8, 0.002 at 10): below 6 seeds no algorithm can be separated from the leader "
    "without assuming normality. p Holm (t): the paired t-test, for a reader who accepts it.",
    "tie: ≈ where the Holm-adjusted permutation p-value is 0.05 or more (or fewer than two "
    "seeds are shared): not separated from the leader. = where two one-sided paired t-tests "
    "(TOST) put the mean difference within ±1% of the reference front's HV at the 5% level: "
    "equivalent to the leader. A ≈ without = is no evidence of a tie, only of too few seeds. "
    "Ranks below the leader among themselves are tested in pairs.csv (every pair, Holm over "
    "the table's pairs).",
    "exact: a table or pair whose seeds add no variance (HV's standard deviation over seeds "
    "below 1e-4) gives exact differences, so no p-value is shown: a test would measure only "
    "floating-point noise. Flags: runs that never leave their start (the record's trajectory "
    "and final point are its starting point), and seeds on which every algorithm scores HV 0.",
    "At the same preference (language tables): C(row, column), the set coverage (Zitzler & "
    "Thiele 1999), is the share of the column's models weakly dominated by one of the row's on "
    "the same seed, averaged over seeds; in parentheses the share of (w, seed) at which the "
    "row's model dominates the column's. pointwise.csv adds per objective the mean difference "
    "at the same (w, seed) with its 95% t interval over seeds.",
    "Reference front: the task's exact front where it has one (its sampling is stated per table; "
    "its HV from the task's closed form where there is one: ZDT1, ZDT2, DTLZ2, Fonseca-Fleming). "
    "Else the reference set pinned in references.json (moabench leaderboard "
    "--freeze-references): the union of every algorithm's complete fronts in the records named "
    "per table, frozen, so that adding an algorithm moves no other algorithm's score; a front "
    "beyond it scores HV / reference HV above 1. Else (a table not frozen yet) the union of "
    "every algorithm's complete fronts, which moves when an algorithm is added. IGD, IGD+ and "
    "GD are measured against it, and HV / reference HV is the score that the across-task "
    "aggregates compare.",
    "cardinality: the number of distinct non-dominated points of a front, points within 1e-6 "
    "of each other in every normalised objective counting once. Sparsity (PGMORL) and "
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
    rankings: dict[str, Ranking]  # by "hypervolume" and by each utility of `UTILITIES`
    pairs: pd.DataFrame  # `rankings.all_pairs` on HV: every ordered pair, Holm over the table
    pointwise: pd.DataFrame  # `pointwise.pointwise_pairs`: models at the same preference
    still: dict[str, tuple[int, int]]  # `flags.still_runs`
    zero_seeds: list[int]  # `flags.zero_seeds`

    @property
    def ranked(self) -> list[Row]:
        return [row for row in self.rows if row.rank is not None]

    @property
    def deterministic(self) -> bool:
        """Seeds add no variance to any ranked algorithm's HV (`stats.deterministic`)."""
        return bool(self.ranked) and self.rankings["hypervolume"].deterministic

    @property
    def margin(self) -> float:
        """The equivalence margin in HV units: `EQUIVALENCE_MARGIN` of the reference HV."""
        return equivalence_margin(self.reference)


@dataclass
class Standings:
    records: pd.DataFrame  # `frame.load_results`' frame with `on_grid` and `complete`
    fronts: pd.DataFrame  # `frame.fronts`: one row per front
    tables: list[TaskTable]


def standings(
    records: pd.DataFrame,
    reference_front: ReferenceFront = default_reference_front,
    partitions: int | None = None,
    pinned: dict[str, PinnedReference] | None = None,
) -> Standings:
    """Fronts and per-task tables of `records` (`frame.load_results`), tables in label order;
    `pinned`: reference sets by table label, for tables without an exact front."""
    marked = mark_fronts(records, partitions)
    groups = dict(list(marked.groupby("table", sort=True)))
    pinned = pinned or {}
    references = {
        label: reference_of(group, reference_front, pinned.get(label))
        for label, group in groups.items()
    }
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


def equivalence_margin(reference: Reference) -> float:
    """`EQUIVALENCE_MARGIN` of the reference front's HV (nan without one)."""
    return EQUIVALENCE_MARGIN * reference.hypervolume


def task_table(records: pd.DataFrame, fronts: pd.DataFrame, reference: Reference) -> TaskTable:
    """The standings of every algorithm configuration on one task table, from its marked records
    and its fronts."""
    first = records.iloc[0]
    label, paradigm = first["table"], first["paradigm"]
    task_params = json.loads(first["task_params"])
    fronts = with_utilities(fronts)
    by_algorithm = dict(list(fronts.groupby("algorithm", sort=True)))
    rows = [
        _row(algorithm, group, by_algorithm[algorithm])
        for algorithm, group in records.groupby("algorithm", sort=True)
    ]
    margin = equivalence_margin(reference)
    _rank(rows, fronts, margin)
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
        rankings={metric: ranking(fronts, metric) for metric in ("hypervolume", *UTILITIES)},
        pairs=all_pairs(fronts, "hypervolume", margin),
        pointwise=pointwise_pairs(records),
        still=still_runs(records),
        zero_seeds=zero_seeds(fronts),
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


def _rank(rows: list[Row], fronts: pd.DataFrame, margin: float) -> None:
    """Order `rows` (ranked ones by mean hypervolume, then those without a complete front), give
    ranks, and compare each ranked row with the leader (equivalence within `margin`)."""
    rows.sort(key=lambda r: (r.seeds == 0, -_mean_hv(r) if r.seeds else 0.0, r.algorithm))
    ranked = [row for row in rows if row.seeds > 0]
    for rank, row in enumerate(ranked, start=1):
        row.rank = rank
    if len(ranked) < 2:
        return
    leader = ranked[0].algorithm
    pairs = [(row.algorithm, leader) for row in ranked[1:]]
    results = comparisons(seed_matrix(fronts, "hypervolume"), pairs, margin)
    for row, (test, p_holm, p_holm_t) in zip(ranked[1:], results):
        row.comparison = Comparison(test, p_holm, p_holm_t)


def _mean_hv(row: Row) -> float:
    return row.summary["hypervolume"].mean if row.seeds else math.nan

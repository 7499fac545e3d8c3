"""The standings as CSV files beside LEADERBOARD.md, for notebooks and spreadsheets:

- `standings.csv`: one row per (task table, algorithm that ran): rank, seeds, failures, every
  metric's mean and 95% t interval (`<metric>`, `<metric>_low`, `<metric>_high`), per ranking
  (`hv_`, `utility_`: by U_ws) the rank, P(best), rank interval and best-set membership, and the
  paired comparison with the leader (`vs_leader`, its interval, `hodges_lehmann`, the sign-flip
  and t p-values Holm-adjusted, TOST's, `exact`, `separated`, `equivalent`);
- `pairs.csv`: one row per (task table, ordered pair a, b): a - b in HV on shared seeds, every
  test of `stats.compare`, Holm over the table's pairs (`rankings.all_pairs`);
- `pointwise.csv`: one row per (task table, ordered pair a, b): their models at the same
  preference (`pointwise.pointwise_pairs`): per-objective gains of a with intervals, dominance
  counts, C(a, b);
- `fronts.csv`: one row per front (`frame.fronts`): the per-seed values every statistic is
  computed from, partial fronts included (`complete` False);
- `aggregates.csv`: one row per (aggregate, algorithm): the IQM, the mean of task means (each
  with its interval) and the mean rank;
- `improvement.csv`: one row per (aggregate, X, Y): P(X > Y) and its interval;
- `profiles.csv`: one row per (aggregate, algorithm, tau): the fraction of runs above tau and its
  band;
- `power.csv`: one row per (aggregate, difference to detect): the seeds each paired test needs
  (`power.power_analysis`).

Numbers are written with 8 significant digits, so the same records give the same bytes.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import pandas as pd

from moabench.evaluation.aggregates import Aggregate
from moabench.evaluation.power import PowerRow
from moabench.evaluation.stats import Interval
from moabench.evaluation.rankings import Ranking
from moabench.evaluation.tables import COLUMNS, Standings, TaskTable

CSV_FILES = [
    "standings.csv", "fronts.csv", "pairs.csv", "pointwise.csv", "aggregates.csv",
    "improvement.csv", "profiles.csv", "power.csv",
]  # fmt: skip
FLOAT_FORMAT = "%.8g"


def write_csvs(
    standings: Standings, aggregates: list[Aggregate], power: list[PowerRow], out_dir: Path
) -> None:
    """Write `CSV_FILES` into `out_dir`."""
    frames = {
        "standings.csv": standings_frame(standings.tables),
        "fronts.csv": standings.fronts,
        "pairs.csv": _per_table(standings.tables, "pairs"),
        "pointwise.csv": _per_table(standings.tables, "pointwise"),
        "aggregates.csv": aggregates_frame(aggregates),
        "improvement.csv": improvement_frame(aggregates),
        "profiles.csv": profiles_frame(aggregates),
        "power.csv": pd.DataFrame(
            [asdict(row) for row in power], columns=[f.name for f in fields(PowerRow)]
        ),
    }
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for name in CSV_FILES:
        frames[name].to_csv(
            Path(out_dir) / name, index=False, float_format=FLOAT_FORMAT, lineterminator="\n"
        )


def _interval(prefix: str, interval: Interval) -> dict[str, float]:
    return {prefix: interval.mean, f"{prefix}_low": interval.low, f"{prefix}_high": interval.high}


def _per_table(tables: list[TaskTable], attribute: str) -> pd.DataFrame:
    """One table-keyed frame of every table's `attribute` (a DataFrame)."""
    frames = [
        getattr(table, attribute).assign(table=table.label)
        for table in tables
        if not getattr(table, attribute).empty
    ]
    if not frames:
        return pd.DataFrame(columns=["table"])
    frame = pd.concat(frames, ignore_index=True)
    return frame[["table", *(c for c in frame.columns if c != "table")]]


def _ranking_values(prefix: str, ranking: Ranking, algorithm: str) -> dict:
    if algorithm not in ranking.estimate:
        return {}
    low, high = ranking.rank_interval[algorithm]
    return {
        f"{prefix}rank": ranking.order.index(algorithm) + 1,
        f"{prefix}p_best": ranking.p_best[algorithm],
        f"{prefix}rank_low": low,
        f"{prefix}rank_high": high,
        f"{prefix}best_set": algorithm in ranking.best,
    }


def standings_frame(tables: list[TaskTable]) -> pd.DataFrame:
    rows = []
    for table in tables:
        for row in table.rows:
            if not row.supported:
                continue
            values = {
                "table": table.label,
                "group": table.group,
                "rank": row.rank,
                "algorithm": row.algorithm,
                "seeds": row.seeds,
                "partial_fronts": row.partial,
                "runs": row.runs,
                "failed_runs": len(row.failed),
            }
            for metric in COLUMNS:
                values |= _interval(metric, row.summary[metric])
            values |= _ranking_values("hv_", table.rankings["hypervolume"], row.algorithm)
            utility = table.rankings["weighted_sum_utility"]
            values |= _ranking_values("utility_", utility, row.algorithm)
            comparison = row.comparison
            if comparison is not None:
                test = comparison.test
                values |= _interval("vs_leader", comparison.difference) | {
                    "shared_seeds": comparison.difference.n,
                    "hodges_lehmann": test.hodges_lehmann,
                    "p_holm": comparison.p_holm,
                    "p_holm_t": comparison.p_holm_t,
                    "p_equivalence": test.p_equivalence,
                    "exact": test.exact,
                    "separated": comparison.separated,
                    "equivalent": comparison.equivalent,
                }
            rows.append(values)
    ranks = [f"{prefix}{name}" for prefix in ("hv_", "utility_") for name in RANK_VALUES]
    columns = ["table", "group", "rank", "algorithm", "seeds", "partial_fronts", "runs"]
    columns += ["failed_runs"] + [f"{m}{s}" for m in COLUMNS for s in ("", "_low", "_high")]
    columns += ranks + ["vs_leader", "vs_leader_low", "vs_leader_high", "shared_seeds"]
    columns += ["hodges_lehmann", "p_holm", "p_holm_t", "p_equivalence", "exact", "separated"]
    columns += ["equivalent"]
    integers = {"rank", "shared_seeds", *(c for c in ranks if not c.endswith(("p_best", "set")))}
    return pd.DataFrame(rows, columns=columns).astype(dict.fromkeys(integers, "Int64"))


RANK_VALUES = ("rank", "p_best", "rank_low", "rank_high", "best_set")


def aggregates_frame(aggregates: list[Aggregate]) -> pd.DataFrame:
    rows = [
        {"group": a.group, "algorithm": name, "tasks": len(a.tables), "runs": a.iqm[name].n}
        | _interval("iqm", a.iqm[name])
        | _interval("task_mean", a.task_mean[name])
        | {"mean_rank": a.mean_rank[name]}
        for a in aggregates
        for name in a.algorithms
    ]
    columns = ["group", "algorithm", "tasks", "runs", "iqm", "iqm_low", "iqm_high", "task_mean"]
    return pd.DataFrame(rows, columns=[*columns, "task_mean_low", "task_mean_high", "mean_rank"])


def improvement_frame(aggregates: list[Aggregate]) -> pd.DataFrame:
    rows = [
        {"group": a.group, "x": x, "y": y} | _interval("p_x_beats_y", a.improvement[(x, y)])
        for a in aggregates
        for x in a.algorithms
        for y in a.algorithms
        if x != y
    ]
    columns = ["group", "x", "y", "p_x_beats_y", "p_x_beats_y_low", "p_x_beats_y_high"]
    return pd.DataFrame(rows, columns=columns)


def profiles_frame(aggregates: list[Aggregate]) -> pd.DataFrame:
    rows = [
        {"group": a.group, "algorithm": name, "tau": tau, "fraction": f, "low": lo, "high": hi}
        for a in aggregates
        for name in a.algorithms
        for tau, f, lo, hi in zip(a.taus, *a.profiles[name])
    ]
    return pd.DataFrame(rows, columns=["group", "algorithm", "tau", "fraction", "low", "high"])

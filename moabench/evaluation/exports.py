"""The standings as CSV files beside LEADERBOARD.md, for notebooks and spreadsheets:

- `standings.csv`: one row per (task table, algorithm that ran): rank, seeds, failures, every
  metric's mean and 95% t interval (`<metric>`, `<metric>_low`, `<metric>_high`), and the paired
  comparison with the leader (`vs_leader`, its interval, `p_value`, `p_holm`, the two ties);
- `fronts.csv`: one row per front (`frame.fronts`): the per-seed values every statistic is
  computed from, partial fronts included (`complete` False);
- `aggregates.csv`: one row per (aggregate, algorithm): the IQM and its interval;
- `improvement.csv`: one row per (aggregate, X, Y): P(X > Y) and its interval;
- `profiles.csv`: one row per (aggregate, algorithm, tau): the fraction of runs above tau and its
  band.

Numbers are written with 8 significant digits, so the same records give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from moabench.evaluation.aggregates import Aggregate
from moabench.evaluation.stats import Interval
from moabench.evaluation.tables import COLUMNS, Standings, TaskTable

CSV_FILES = ["standings.csv", "fronts.csv", "aggregates.csv", "improvement.csv", "profiles.csv"]
FLOAT_FORMAT = "%.8g"


def write_csvs(standings: Standings, aggregates: list[Aggregate], out_dir: Path) -> None:
    """Write `CSV_FILES` into `out_dir`."""
    frames = {
        "standings.csv": standings_frame(standings.tables),
        "fronts.csv": standings.fronts,
        "aggregates.csv": aggregates_frame(aggregates),
        "improvement.csv": improvement_frame(aggregates),
        "profiles.csv": profiles_frame(aggregates),
    }
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for name in CSV_FILES:
        frames[name].to_csv(
            Path(out_dir) / name, index=False, float_format=FLOAT_FORMAT, lineterminator="\n"
        )


def _interval(prefix: str, interval: Interval) -> dict[str, float]:
    return {prefix: interval.mean, f"{prefix}_low": interval.low, f"{prefix}_high": interval.high}


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
            comparison = row.comparison
            if comparison is not None:
                values |= _interval("vs_leader", comparison.difference) | {
                    "shared_seeds": comparison.difference.n,
                    "p_value": comparison.p_value,
                    "p_holm": comparison.p_holm,
                    "statistical_tie": comparison.statistical_tie,
                    "practical_tie": comparison.practical_tie,
                }
            rows.append(values)
    columns = ["table", "group", "rank", "algorithm", "seeds", "partial_fronts", "runs"]
    columns += ["failed_runs"] + [f"{m}{s}" for m in COLUMNS for s in ("", "_low", "_high")]
    columns += ["vs_leader", "vs_leader_low", "vs_leader_high", "shared_seeds", "p_value"]
    columns += ["p_holm", "statistical_tie", "practical_tie"]
    return pd.DataFrame(rows, columns=columns).astype({"rank": "Int64", "shared_seeds": "Int64"})


def aggregates_frame(aggregates: list[Aggregate]) -> pd.DataFrame:
    rows = [
        {"group": a.group, "algorithm": name, "tasks": len(a.tables), "runs": a.iqm[name].n}
        | _interval("iqm", a.iqm[name])
        for a in aggregates
        for name in a.algorithms
    ]
    return pd.DataFrame(
        rows, columns=["group", "algorithm", "tasks", "runs", "iqm", "iqm_low", "iqm_high"]
    )


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

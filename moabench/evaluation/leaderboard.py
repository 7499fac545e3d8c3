"""Run records -> LEADERBOARD.md, the CSV files beside it, the web page and the plots; and the
check that committed ones are what the records give.

The records are read once into a DataFrame (`frame.load_results`), their fronts and per-task
tables computed once (`tables.standings`), then the across-task aggregates (`aggregates`), and
everything is rendered by `markdown`, `exports`, `site` and `plots`. The output is a pure function
of the records: no timestamps, no clock read (the wall times shown are the records' own), a fixed
bootstrap seed and fixed number formatting, so the same records give byte-identical text files.
"""

from __future__ import annotations

import difflib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moabench.evaluation.aggregates import Aggregate, aggregates
from moabench.evaluation.exports import CSV_FILES, write_csvs
from moabench.evaluation.frame import ReferenceFront, default_reference_front, read_results
from moabench.evaluation.markdown import render_markdown
from moabench.evaluation.site import write_site
from moabench.evaluation.tables import Standings, TaskTable, standings


@dataclass
class LeaderboardResult:
    tables: list[TaskTable]
    aggregates: list[Aggregate]
    skipped: list[tuple[Path, str]]


def build_leaderboard(
    results_dir: Path,
    out_dir: Path,
    reference_front: ReferenceFront = default_reference_front,
    plots: bool = True,
    partitions: int | None = None,
) -> LeaderboardResult:
    """Read every record under `results_dir`; write `out_dir/LEADERBOARD.md`, the CSV files
    beside it, the web page `out_dir/site/index.html` and the plots `out_dir/plots/` (where a
    PNG that no table or aggregate draws any more is removed). A complete front covers the
    simplex lattice of `partitions` (default: the standard grid of `moabench sweep`)."""
    records, skipped = read_results(results_dir)
    board = standings(records, reference_front, partitions)
    groups = aggregates(board)
    out_dir = Path(out_dir)
    if plots:
        _draw(board, groups, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "LEADERBOARD.md").write_text(render_markdown(board.tables, groups, CSV_FILES))
    write_csvs(board, groups, out_dir)
    write_site(board.tables, groups, out_dir, CSV_FILES)
    return LeaderboardResult(board.tables, groups, skipped)


def _draw(board: Standings, groups: list[Aggregate], out_dir: Path) -> None:
    from moabench.evaluation import plots  # matplotlib: only when drawing

    drawn = board.fronts[board.fronts["complete"]]  # partial fronts are not drawn
    styles = plots.algorithm_styles(drawn["algorithm"].unique().tolist())
    for table in filter(_has_front_plots, board.tables):
        fronts = _front_points(board.records, table)
        reference = table.reference
        legend = f"reference front ({reference.kind})"
        plots.plot_overlay(
            f"{table.label}: every algorithm's median front", table.space,
            _median_fronts(board.fronts, table, fronts), reference.raw, legend,
            out_dir / table.overlay, styles,
        )  # fmt: skip
        plots.plot_fronts(
            f"{table.label}: every seed's final points by preference", table.space, fronts,
            reference.raw, legend, out_dir / table.plot,
        )  # fmt: skip
    for group in groups:
        if group.algorithms:
            plots.plot_aggregate(group, out_dir / f"plots/{group.slug}.png", styles)
    for stale in _plot_files(out_dir) - _drawn_plots(board.tables, groups):
        (out_dir / stale).unlink()


def _front_points(records: pd.DataFrame, table: TaskTable) -> dict[str, tuple]:
    """Per algorithm of `table`: the raw final points, preferences and seeds of its complete
    fronts' ok runs."""
    mine = records[
        (records["table"] == table.label) & records["complete"] & (records["status"] == "ok")
    ]
    m = table.space.n_objectives
    return {
        str(name): (
            np.asarray(list(group["objectives"]), dtype=np.float64).reshape(-1, m),
            np.asarray(list(group["preference"]), dtype=np.float64).reshape(-1, m),
            group["seed"].to_numpy(),
        )
        for name, group in mine.groupby("algorithm", sort=True)
    }


def _median_fronts(fronts: pd.DataFrame, table: TaskTable, points: dict[str, tuple]) -> dict:
    """Per algorithm of `table`: (the final points of its median seed by hypervolume, the lower
    middle one for an even count; that seed; its number of complete fronts)."""
    mine = fronts[(fronts["table"] == table.label) & fronts["complete"]]
    medians = {}
    for name, group in mine.groupby("algorithm", sort=True):
        ordered = group.sort_values(["hypervolume", "seed"], kind="stable")["seed"].tolist()
        seed = int(ordered[(len(ordered) - 1) // 2])
        raw, _, seeds = points.get(str(name), (np.zeros((0, table.space.n_objectives)), None, []))
        medians[str(name)] = (raw[np.asarray(seeds) == seed], seed, len(ordered))
    return medians


def _drawn_plots(tables: list[TaskTable], groups: list[Aggregate]) -> set[str]:
    """The plot files the leaderboard draws: per task table with a ranked row and two or three
    objectives, its overlay and small multiples; per aggregate with an algorithm, its figure."""
    drawn = {f"plots/{group.slug}.png" for group in groups if group.algorithms}
    for table in filter(_has_front_plots, tables):
        drawn |= {table.plot, table.overlay}
    return drawn


def _has_front_plots(table: TaskTable) -> bool:
    return bool(table.ranked) and table.space.n_objectives in (2, 3)


def _plot_files(out_dir: Path) -> set[str]:
    return {f"plots/{path.name}" for path in (Path(out_dir) / "plots").glob("*.png")}


GENERATED_FILES = ("LEADERBOARD.md", *CSV_FILES, "site/index.html")


@dataclass
class LeaderboardCheck:
    differences: list[str]  # empty when the committed leaderboard is up to date
    skipped: list[tuple[Path, str]]  # the record files left out, and why


def check_leaderboard(
    results_dir: Path,
    committed_dir: Path,
    reference_front: ReferenceFront = default_reference_front,
    partitions: int | None = None,
) -> LeaderboardCheck:
    """Regenerate into a temporary folder and compare with `committed_dir`: diff lines of
    LEADERBOARD.md, the CSV files and the web page, and the plots that are missing or that
    nothing draws. Plot pixels are not compared (they depend on matplotlib's version and
    fonts)."""
    committed_dir = Path(committed_dir)
    differences: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        result = build_leaderboard(
            results_dir, Path(scratch), reference_front, plots=False, partitions=partitions
        )
        for name in GENERATED_FILES:
            committed = committed_dir / name
            old = committed.read_text() if committed.exists() else ""
            fresh = (Path(scratch) / name).read_text()
            differences += difflib.unified_diff(
                old.splitlines(), fresh.splitlines(), str(committed), "regenerated", lineterm=""
            )
    drawn, present = _drawn_plots(result.tables, result.aggregates), _plot_files(committed_dir)
    differences += [f"missing plot: {committed_dir / name}" for name in sorted(drawn - present)]
    differences += [
        f"stale plot (nothing draws it): {committed_dir / name}" for name in sorted(present - drawn)
    ]
    return LeaderboardCheck(differences, result.skipped)

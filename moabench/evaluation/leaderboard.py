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
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moabench.core.errors import ConfigError
from moabench.evaluation.aggregates import Aggregate, aggregates
from moabench.evaluation.exports import CSV_FILES, write_csvs
from moabench.evaluation.frame import ReferenceFront, default_reference_front, read_results
from moabench.evaluation.markdown import render_markdown
from moabench.evaluation.power import power_analysis
from moabench.evaluation.references import freeze, read_references, write_references
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
    references: Path | None = None,
    freeze_references: bool = False,
) -> LeaderboardResult:
    """Read every record under `results_dir`; write `out_dir/LEADERBOARD.md`, the CSV files
    beside it, the web page `out_dir/site/index.html` and the plots `out_dir/plots/`, listed in
    `out_dir/.moabench-outputs.json`: a plot of that list that nothing draws any more is removed,
    and a file moabench did not write is never touched. A complete front covers the
    simplex lattice of `partitions` (default: the standard grid of `moabench sweep`). Tables
    without an exact front take their pinned reference sets from `references` (default
    `out_dir/references.json`, where there is one), which `freeze_references` first writes from
    these records (`references.freeze`)."""
    records, skipped = read_results(results_dir)
    if records.empty:
        raise ConfigError(_no_records(Path(results_dir), skipped))
    references = Path(out_dir) / REFERENCES if references is None else Path(references)
    if freeze_references:
        write_references(references, freeze(records, reference_front, partitions))
    board = standings(records, reference_front, partitions, read_references(references))
    groups = aggregates(board)
    power = power_analysis(board.tables, board.fronts)
    out_dir = Path(out_dir)
    if plots:
        _draw(board, groups, out_dir)
    figures = _figures(board.tables, groups)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "LEADERBOARD.md").write_text(
        render_markdown(board.tables, groups, CSV_FILES, figures, power)
    )
    write_csvs(board, groups, power, out_dir)
    write_site(board.tables, groups, out_dir, CSV_FILES, figures, power)
    drawn = _drawn_plots(board.tables, groups) if plots else None
    _list_outputs(out_dir, set(GENERATED_FILES), drawn)
    return LeaderboardResult(board.tables, groups, skipped)


#: The pinned reference sets in the output folder (`references`): read, and written only when
#: asked to freeze them.
REFERENCES = "references.json"

#: The list, in the output folder, of the files the leaderboard wrote there: the only files it
#: ever removes (a plot nothing draws any more), so that a user's own files in it are safe.
MANIFEST = ".moabench-outputs.json"


def _list_outputs(out_dir: Path, written: set[str], drawn: set[str] | None) -> None:
    """Write `MANIFEST`: `written` and the plots `drawn` (None: not drawn this time, the listed
    ones kept); remove the files the previous list holds and this one does not."""
    manifest = out_dir / MANIFEST
    listed = _listed_outputs(out_dir)
    outputs = written | (drawn if drawn is not None else listed)
    root = out_dir.resolve()
    for name in sorted(listed - outputs):
        stale = out_dir / name
        if stale.resolve().is_relative_to(root) and stale.is_file():
            stale.unlink()
    manifest.write_text(json.dumps(sorted(outputs), indent=1) + "\n")


def _listed_outputs(out_dir: Path) -> set[str]:
    """The files `MANIFEST` says the leaderboard wrote in `out_dir` (none yet, or damaged: none)."""
    try:
        return {str(name) for name in json.loads((out_dir / MANIFEST).read_text())}
    except (OSError, ValueError, TypeError):
        return set()


def _no_records(results_dir: Path, skipped: list[tuple[Path, str]]) -> str:
    left_out = f" ({len(skipped)} files left out, see the warnings)" if skipped else ""
    return (
        f"no run records in {results_dir}{left_out}: write some first with `moabench run "
        f"--results-dir {results_dir} ...` or `moabench sweep --results-dir {results_dir} ...`"
    )


def _draw(board: Standings, groups: list[Aggregate], out_dir: Path) -> None:
    from moabench.evaluation import plots  # matplotlib: only when drawing

    styles = plots.algorithm_styles(board.fronts["algorithm"].unique().tolist())
    figures = _figures(board.tables, groups)
    for table in board.tables:
        reference = table.reference
        legend = f"reference front ({reference.kind})"
        if table.overlay in figures:
            points = _front_points(board.records, table, complete=True)
            plots.plot_overlay(
                f"{table.label}: every algorithm's median front", table.space,
                _median_fronts(board.fronts, table, points), reference.raw, legend,
                out_dir / table.overlay, styles,
            )  # fmt: skip
        if table.plot in figures:
            plots.plot_fronts(
                f"{table.label}: every seed's final points by preference", table.space,
                _front_points(board.records, table, complete=True), reference.raw, legend,
                out_dir / table.plot, _front_points(board.records, table, complete=False),
            )  # fmt: skip
        if table.compute in figures:
            plots.plot_compute(
                f"{table.label}\nhypervolume against the front's training compute",
                {row.algorithm: (row.summary["hypervolume"], row.summary["gradient_evaluations"])
                 for row in table.ranked},
                out_dir / table.compute, styles,
            )  # fmt: skip
    for group in groups:
        if f"plots/{group.slug}.png" in figures:
            plots.plot_aggregate(group, out_dir / f"plots/{group.slug}.png", styles)


def _front_points(records: pd.DataFrame, table: TaskTable, complete: bool) -> dict[str, tuple]:
    """Per algorithm of `table`: the raw final points, preferences and seeds of its ok runs on
    complete fronts (`complete`) or on partial ones."""
    mine = records[
        (records["table"] == table.label)
        & (records["complete"] == complete)
        & (records["status"] == "ok")
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


def _figures(tables: list[TaskTable], groups: list[Aggregate]) -> set[str]:
    """The figures the leaderboard draws, as their PNG paths: per aggregate with an algorithm,
    its figure; per task table with an algorithm ranked, hypervolume against front compute;
    with two or three objectives, its overlay where an algorithm is ranked and its small
    multiples where any front has a point (partial fronts marked)."""
    drawn = {f"plots/{group.slug}.png" for group in groups if group.algorithms}
    drawn |= {table.compute for table in tables if table.ranked}
    for table in tables:
        if table.space.n_objectives not in (2, 3):
            continue
        if table.ranked:
            drawn |= {table.plot, table.overlay}
        elif table.partial:
            drawn.add(table.plot)
    return drawn


def _drawn_plots(tables: list[TaskTable], groups: list[Aggregate]) -> set[str]:
    """The plot files the leaderboard writes: every figure as PNG and as PDF beside it."""
    return {
        name
        for png in _figures(tables, groups)
        for name in (png, png.removesuffix(".png") + ".pdf")
    }


def _plot_files(out_dir: Path) -> set[str]:
    return {
        f"plots/{path.name}"
        for pattern in ("*.png", "*.pdf")
        for path in (Path(out_dir) / "plots").glob(pattern)
    }


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
    """Regenerate into a temporary folder (with the pinned reference sets of `committed_dir`)
    and compare with `committed_dir`: diff lines of LEADERBOARD.md, the CSV files and the web
    page, and the plots that are missing or that nothing draws. Plot pixels are not compared
    (they depend on matplotlib's version and fonts)."""
    committed_dir = Path(committed_dir)
    differences: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        result = build_leaderboard(
            results_dir, Path(scratch), reference_front, plots=False, partitions=partitions,
            references=committed_dir / REFERENCES,
        )  # fmt: skip
        for name in GENERATED_FILES:
            committed = committed_dir / name
            old = committed.read_text() if committed.exists() else ""
            fresh = (Path(scratch) / name).read_text()
            differences += difflib.unified_diff(
                old.splitlines(), fresh.splitlines(), str(committed), "regenerated", lineterm=""
            )
    drawn, present = _drawn_plots(result.tables, result.aggregates), _plot_files(committed_dir)
    ours = present & _listed_outputs(committed_dir)  # a user's own files in plots/ are not stale
    differences += [f"missing plot: {committed_dir / name}" for name in sorted(drawn - present)]
    differences += [
        f"stale plot (nothing draws it): {committed_dir / name}" for name in sorted(ours - drawn)
    ]
    return LeaderboardCheck(differences, result.skipped)

"""Run records -> LEADERBOARD.md, the web page and the front plots; and the check that committed
ones are what the records give.

The tables are computed once (`tables.standings`) and rendered by `markdown`, `site` and `plots`.
The output is a pure function of the records: no timestamps, no wall time in the pages (it stays
in the records), fixed bootstrap seed and number formatting, so the same records give
byte-identical pages.
"""

from __future__ import annotations

import difflib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from moabench.evaluation.markdown import render_markdown
from moabench.evaluation.site import write_site
from moabench.evaluation.tables import (
    ReferenceFront,
    TaskTable,
    default_reference_front,
    standings,
    task_mismatch,
)
from moabench.runs.records import RunRecord, load_records


@dataclass
class LeaderboardResult:
    tables: list[TaskTable]
    skipped: list[tuple[Path, str]]


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


def build_leaderboard(
    results_dir: Path,
    out_dir: Path,
    reference_front: ReferenceFront = default_reference_front,
    plots: bool = True,
) -> LeaderboardResult:
    """Read every record under `results_dir`; write `out_dir/LEADERBOARD.md`, the web page
    `out_dir/site/index.html` and the front plots `out_dir/plots/` (where a PNG that no table
    draws any more is removed)."""
    records, skipped = usable_records(results_dir)
    configurations = standings(records, reference_front)
    tables = [configuration.table for configuration in configurations]
    out_dir = Path(out_dir)
    if plots:
        from moabench.evaluation.plots import plot_fronts  # matplotlib: only when drawing

        for configuration in configurations:
            table = configuration.table
            if table.space.n_objectives in (2, 3):
                plot_fronts(
                    f"{table.label}: final points by preference",
                    table.space,
                    configuration.points,
                    reference_front(configuration.task, configuration.task_params),
                    out_dir / table.plot,
                )
        for stale in _plot_files(out_dir) - _drawn_plots(tables):
            (out_dir / stale).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "LEADERBOARD.md").write_text(render_markdown(tables))
    write_site(tables, out_dir)
    return LeaderboardResult(tables, skipped)


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

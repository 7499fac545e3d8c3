"""The leaderboard from the committed records, as CI's `moabench leaderboard --check` makes it:
reading the records, fronts and per-task statistics, the across-task bootstrap, the pages and
CSV files, without plots (target: under 15 s on the 2-core CI machine; figures in
BENCHMARKS.md).

Run: pytest benchmarks/test_bench_leaderboard.py --benchmark-only
"""

from pathlib import Path

from moabench.evaluation.leaderboard import build_leaderboard

RESULTS = Path(__file__).resolve().parents[1] / "leaderboard" / "results"


def test_leaderboard_of_the_committed_records(benchmark, tmp_path):
    result = benchmark.pedantic(
        lambda: build_leaderboard(RESULTS, tmp_path / "board", plots=False), rounds=1, iterations=1
    )
    assert result.tables and all(aggregate.algorithms for aggregate in result.aggregates)

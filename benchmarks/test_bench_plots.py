"""The leaderboard's figures for print (a PNG at 300 dpi and a PDF beside each): drawing those of
zdt1, dtlz2 and safety (both paradigms: per table its overlay, small multiples and hypervolume
against compute) and their 3 aggregates, 15 figures, from the committed
records; the standings are computed beforehand and not timed (figures in BENCHMARKS.md).

Run: pytest benchmarks/test_bench_plots.py --benchmark-only
"""

from pathlib import Path

from moabench.evaluation import leaderboard
from moabench.evaluation.aggregates import aggregates
from moabench.evaluation.frame import read_results
from moabench.evaluation.tables import standings

RESULTS = Path(__file__).resolve().parents[1] / "leaderboard" / "results"


def test_figures_of_three_tasks(benchmark, tmp_path):
    records, _ = read_results(RESULTS)
    board = standings(records[records["task"].isin(["zdt1", "dtlz2", "safety"])])
    groups = aggregates(board)
    benchmark.pedantic(lambda: leaderboard._draw(board, groups, tmp_path), rounds=1, iterations=1)
    assert len(list((tmp_path / "plots").glob("*.png"))) == 15

"""The standard analytic suite (all rules x all analytic problems x the preference grid x 3 seeds)
and its leaderboard, on 2 worker processes (target: under 60 s on the 2-core CI machine).

Run: pytest benchmarks/test_bench_suite.py --benchmark-only
"""

from moabench.leaderboard import build_leaderboard
from moabench.sweep import SweepConfig, plan_sweep, run_sweep
from moabench.task import make_task


def run_suite_and_leaderboard(tmp_path):
    plan = plan_sweep(SweepConfig(tasks=["analytic"]))
    summary = run_sweep(plan.configs, tmp_path / "results", workers=2)
    build_leaderboard(
        tmp_path / "results",
        tmp_path / "board",
        reference_front=lambda task, params: make_task(task, **params).pareto_front(),
    )
    return summary


def test_analytic_suite_and_leaderboard(benchmark, tmp_path_factory):
    summary = benchmark.pedantic(
        lambda: run_suite_and_leaderboard(tmp_path_factory.mktemp("suite")), rounds=1, iterations=1
    )
    assert summary.ok == summary.total and not summary.failed

"""The standard analytic suite (all rules x all analytic problems x the preference grid x 3 seeds)
and its leaderboard, on 2 worker processes (target: under 60 s on the 2-core CI machine).

Run: pytest benchmarks/test_bench_suite.py --benchmark-only
"""

from moabench.core.task import make_task
from moabench.evaluation.leaderboard import build_leaderboard
from moabench.language import tiny
from moabench.runs.sweep import SweepConfig, plan_sweep, run_sweep


def run_suite_and_leaderboard(tmp_path):
    plan = plan_sweep(SweepConfig(tasks=["analytic"], seeds=[0, 1, 2]))
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


def test_preference_sweep_of_issue_3(benchmark, tmp_path_factory):
    """{ls, modpo, raco, mgda, gapo} x {safety, summarization} x 5 preferences x 1 seed on 2
    workers (target: under 15 minutes on this machine); reference policies cached beforehand."""
    sweep = SweepConfig(
        algorithms=["ls", "modpo", "raco", "mgda", "gapo"],
        tasks=["safety", "summarization"],
        seeds=[0],
        partitions=4,
        task_params={
            "safety": {"paradigm": "preference"},
            "summarization": {"paradigm": "preference"},
        },
    )
    plan = plan_sweep(sweep)
    assert len(plan.configs) == 50
    for task in ("safety", "summarization"):
        tiny.preference_problem(make_task(task))
    summary = benchmark.pedantic(
        lambda: run_sweep(plan.configs, tmp_path_factory.mktemp("sweep") / "results", workers=2),
        rounds=1,
        iterations=1,
    )
    assert summary.ok == summary.total == 50


def test_online_sweep_of_issue_4(benchmark, tmp_path_factory):
    """Every online algorithm x {safety, summarization, math} x 5 preferences x 1 seed on 2
    workers (target: under 30 minutes on this machine); reference policies cached beforehand."""
    online = [
        "ls",
        "mgda",
        "gapo",
        "p-gapo",
        "cagrad",
        "raco",
        "dynamic-weighting",
        "upgrad",
        "pama",
    ]
    sweep = SweepConfig(
        algorithms=online,
        tasks=["safety", "summarization", "math"],
        seeds=[0],
        partitions=4,
        task_params={"safety": {"paradigm": "online"}, "summarization": {"paradigm": "online"}},
    )
    plan = plan_sweep(sweep)
    # m = 3: the 4-partition lattice has 15 points; dynamic weighting runs in both variants
    assert len(plan.configs) == 10 * (5 + 5 + 15)
    for task in ("safety", "summarization", "math"):
        tiny.task_reference(make_task(task), tiny.task_tokenizer(make_task(task)))
    summary = benchmark.pedantic(
        lambda: run_sweep(plan.configs, tmp_path_factory.mktemp("online") / "results", workers=2),
        rounds=1,
        iterations=1,
    )
    assert summary.ok == summary.total

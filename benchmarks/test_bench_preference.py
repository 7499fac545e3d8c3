"""Cost of a tiny-scale preference-data run per algorithm: linear scalarization takes one backward
pass per step, a gradient-level rule one per objective plus the rule (target: a ratio close to
m backward passes to one).

Run: pytest benchmarks/test_bench_preference.py --benchmark-only
"""

import pytest

from moabench.core.algorithm import make_algorithm
from moabench.core.determinism import one_torch_thread
from moabench.core.task import make_task
from moabench.language import tiny
from moabench.language.preference import train_preference
from moabench.runs.runner import execute, resolve_config

TRAINING_SECONDS: dict[tuple[int, str], float] = {}


@pytest.mark.parametrize("algorithm", ["ls", "modpo", "mgda", "raco", "upgrad"])
@pytest.mark.parametrize("task", ["safety", "summarization"])
def test_tiny_preference_run(benchmark, algorithm, task):
    """One whole run (sampling pairs, 40 steps, 5 evaluations); target: under 2 minutes."""
    config = resolve_config(algorithm, task, [0.5, 0.5], task_params={"steps": 40})
    execute(config)  # the reference policy is trained and cached outside the timing
    benchmark.group = task
    record = benchmark.pedantic(execute, args=(config,), rounds=3, iterations=1)
    assert record.status == "ok"


@pytest.mark.parametrize("algorithm", ["ls", "mgda", "gapo", "raco", "upgrad"])
@pytest.mark.parametrize("m", [2, 3])
def test_training_step_cost_against_ls(benchmark, algorithm, m):
    """Training only (no evaluation), 40 steps of summarization with m objectives. The ratio to
    `ls` (one backward pass per step) is stored in extra_info: a rule pays m backward passes, so
    the target is a ratio close to m."""
    task = make_task("summarization", steps=40, n_objectives=m)
    tiny.preference_problem(task)  # cache the reference policy untimed
    benchmark.group = f"training step, m = {m}"

    def setup():
        problem = tiny.preference_problem(task)
        problem.evaluate = lambda policy: [0.0] * m
        return (problem, make_algorithm(algorithm, [1 / m] * m)), {}

    def train(problem, rule):
        with one_torch_thread():
            train_preference(problem, rule, 0, task.params, m)

    benchmark.pedantic(train, setup=setup, rounds=3, iterations=1)
    if benchmark.disabled:  # --benchmark-disable (CI's smoke run): one call, no timings to compare
        return
    TRAINING_SECONDS[(m, algorithm)] = benchmark.stats.stats.min
    if (m, "ls") in TRAINING_SECONDS:
        ratio = TRAINING_SECONDS[(m, algorithm)] / TRAINING_SECONDS[(m, "ls")]
        benchmark.extra_info["ratio_to_ls"] = ratio
        print(f"\n{algorithm} / ls at m = {m}: {ratio:.2f}")


@pytest.mark.parametrize("algorithm", ["ls", "gapo", "pama", "dynamic-weighting"])
@pytest.mark.parametrize("task", ["safety", "math"])
def test_tiny_online_run(benchmark, algorithm, task):
    """One whole online run at the default 80 steps; target: under 3 minutes."""
    preference = [0.4, 0.3, 0.3] if task == "math" else [0.5, 0.5]
    params = {"paradigm": "online"} if task == "safety" else {}
    config = resolve_config(algorithm, task, preference, task_params=params)
    tiny.task_reference(
        make_task(task), tiny.task_tokenizer(make_task(task))
    )  # cached outside the timing
    benchmark.group = f"online {task}"
    record = benchmark.pedantic(execute, args=(config,), rounds=1, iterations=1)
    assert record.status == "ok"

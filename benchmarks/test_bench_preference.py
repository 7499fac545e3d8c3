"""Cost of a tiny-scale preference-data run per algorithm: linear scalarization takes one backward
pass per step, a gradient-level rule one per objective plus the rule (target: a ratio close to
m backward passes to one).

Run: pytest benchmarks/test_bench_preference.py --benchmark-only
"""

import pytest

from moabench.runner import execute, resolve_config


@pytest.mark.parametrize("algorithm", ["ls", "modpo", "mgda", "raco", "upgrad"])
@pytest.mark.parametrize("task", ["safety", "summarization"])
def test_tiny_preference_run(benchmark, algorithm, task):
    config = resolve_config(algorithm, task, [0.5, 0.5], task_params={"steps": 40})
    execute(config)  # the reference policy is trained and cached outside the timing
    benchmark.group = task
    record = benchmark.pedantic(execute, args=(config,), rounds=3, iterations=1)
    assert record.status == "ok"

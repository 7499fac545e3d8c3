"""A front trained together against its points run one by one (issue 20): ls on tiny safety,
11 points (`--partitions 10`), default settings (80 steps, 5 evaluations), both paradigms.

- "in one process": the front as one job (`run_front`: the points back to back, sharing the
  per-process caches of `moabench.language.tiny` after the first) against the same points each
  starting from empty caches (what points share nothing pay: the reference loaded, its
  evaluation, the pairs and their reference log-probabilities); CPU time of the process.
- "sweep, 2 workers": `run_sweep(..., workers=2)` with `front_training` "together" against
  "separate", fresh workers each time; wall time (the workers' CPU time is not this process's).

    pytest benchmarks/test_bench_front.py --benchmark-only -k one_process \
        --benchmark-timer time.process_time
    pytest benchmarks/test_bench_front.py --benchmark-only -k two_workers

(ratios are between the two modes of one group, in one run.) CI's smoke run
(`--benchmark-disable`) trains 3 points (`--partitions 2`) instead of 11.
"""

from __future__ import annotations

import pytest

from moabench.core.determinism import one_torch_thread
from moabench.language import tiny
from moabench.runs.runner import run_front
from moabench.runs.sweep import SweepConfig, plan_sweep, run_sweep


def front(paradigm: str, benchmark) -> list:
    partitions = 2 if benchmark.disabled else 10
    config = SweepConfig(algorithms=["ls"], tasks=["safety"], seeds=[0], partitions=partitions,
                         task_params={"safety": {"paradigm": paradigm}})  # fmt: skip
    return plan_sweep(config).configs


def empty_caches() -> None:
    for cache in (tiny._REFERENCES, tiny._EVALUATIONS, tiny._PREFERENCE_DATA):
        cache.clear()


@pytest.mark.parametrize("paradigm", ["preference", "online"])
@pytest.mark.parametrize("mode", ["together", "one by one"])
def test_front_in_one_process(benchmark, tmp_path_factory, paradigm, mode):
    configs = front(paradigm, benchmark)

    def run() -> None:
        results = tmp_path_factory.mktemp("front")
        empty_caches()
        if mode == "together":
            records = run_front(configs, results)
        else:
            records = []
            for config in configs:
                empty_caches()
                records += run_front([config], results)
        assert [r.status for r in records] == ["ok"] * len(configs)

    benchmark.group = f"front of 11 in one process, {paradigm}"
    with one_torch_thread():
        benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("paradigm", ["preference", "online"])
@pytest.mark.parametrize("mode", ["together", "separate"])
def test_front_in_a_sweep_of_two_workers(benchmark, tmp_path_factory, paradigm, mode):
    configs = front(paradigm, benchmark)

    def run() -> None:
        summary = run_sweep(configs, tmp_path_factory.mktemp("sweep"), workers=2,
                            front_training=mode)  # fmt: skip
        assert summary.ok == len(configs)

    benchmark.group = f"front of 11, sweep of 2 workers (wall), {paradigm}"
    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)

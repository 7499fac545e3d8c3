"""Throughput of the tiny scale, the figures of issue 20's bit-exact wins: one DPO step (the
forward, m backward passes and the rule on 32 pairs), one online step (sampling 32 responses and
the update) and one whole run per paradigm, as a sweep worker runs them (its second run of a
task: the reference policy and, since the per-process caches, the pairs are already there).

The same file times the code it imports, so "before" is this file run against an older checkout:

    pytest benchmarks/test_bench_throughput.py --benchmark-only --benchmark-timer time.process_time
    PYTHONPATH=/tmp/before pytest benchmarks/test_bench_throughput.py --benchmark-only \\
        --benchmark-timer time.process_time

(`pytest`, not `python -m pytest`, which would put this checkout first on the path; each
benchmark's extra_info names the moabench it timed.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import moabench
from moabench.core.algorithm import make_algorithm
from moabench.core.determinism import one_torch_thread
from moabench.core.gradients import combine_micro_batches
from moabench.core.task import make_task
from moabench.language import tiny
from moabench.language.lm import select_rows, sequence_log_probs
from moabench.language.online import train_online
from moabench.language.preference import per_objective_dpo_losses
from moabench.runs.runner import execute, resolve_config

ONLINE_STEPS = 4


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def timed(benchmark, function, rounds: int, group: str) -> None:
    benchmark.group = group
    benchmark.extra_info["moabench"] = moabench.__file__
    benchmark.pedantic(function, rounds=rounds, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("algorithm", ["ls", "upgrad"])
def test_dpo_step(benchmark, algorithm):
    """One step of safety's DPO at batch_size 32 (64 rows of prompt + response)."""
    task = make_task("safety")
    problem = tiny.preference_problem(task)
    policy, pairs, n = problem.policy.train(), problem.pairs, problem.pairs.input_ids.shape[0] // 2
    parameters = [p for p in policy.parameters() if p.requires_grad]
    rule = make_algorithm(algorithm, [0.5, 0.5])
    index = torch.randint(n, (32,), generator=torch.Generator().manual_seed(0))
    rows = torch.cat([index, index + n])
    batch = select_rows(pairs, rows, trim=False)
    with torch.no_grad():
        reference = sequence_log_probs(policy.eval(), batch)
    policy.train()

    def losses() -> torch.Tensor:
        log_ratios = sequence_log_probs(policy, batch) - reference
        return per_objective_dpo_losses(0.1 * (log_ratios[:32] - log_ratios[32:]), pairs_signs)

    pairs_signs = problem.signs[:, index]
    timed(
        benchmark,
        lambda: combine_micro_batches([losses], parameters, rule, 1e-3, None, None),
        rounds=20,
        group="DPO step",
    )


@pytest.mark.parametrize("algorithm", ["ls", "gapo"])
def test_online_step(benchmark, algorithm):
    """safety online, 8 prompts x 4 responses per step, without evaluations: the time of
    `ONLINE_STEPS` steps (sampling, rewards, log-probabilities and the update)."""
    task = make_task("safety", paradigm="online", steps=ONLINE_STEPS)

    def run() -> None:
        problem = tiny.online_problem(task)
        problem.evaluate = lambda: [0.0, 0.0]
        train_online(problem, make_algorithm(algorithm, [0.5, 0.5]), 0, task.params, 2)

    timed(benchmark, run, rounds=3, group=f"online, {ONLINE_STEPS} steps")


@pytest.mark.parametrize(
    ("algorithm", "task", "params"),
    [
        ("upgrad", "safety", {}),
        ("ls", "summarization", {}),
        ("gapo", "safety", {"paradigm": "online"}),
        ("ls", "math", {}),
    ],
)
def test_whole_run(benchmark, algorithm, task, params):
    """One whole run at its default settings (80 steps, 5 evaluations), as a sweep worker's
    second run of the task."""
    m = make_task(task).space.n_objectives
    config = resolve_config(algorithm, task, list(np.full(m, 1 / m)), task_params=params)
    record = execute(config)
    timed(benchmark, lambda: execute(config), rounds=2, group="whole run")
    assert record.status == "ok"

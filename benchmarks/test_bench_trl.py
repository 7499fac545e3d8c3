"""Training throughput of moabench's trainers against trl's, side by side on the same tiny model,
data and batch size, both on one torch thread (as every moabench run):
- DPO: `ls` (DPO-LW) against `DPOTrainer` on safety's pairs (target: at least 0.8x trl's steps
  per second, goal 1x); reference log-probabilities precomputed once on both sides;
- online: `ls` (MORLHF) against `GRPOTrainer` with `reward_weights` on math (same target).
Both sides time the training loop only, without evaluation. The moabench / trl ratio is printed
and stored in the benchmark's extra_info.

Run: pytest benchmarks/test_bench_trl.py --benchmark-only -s
"""

import time

import pytest

from moabench.core.algorithm import make_algorithm
from moabench.core.determinism import one_torch_thread
from moabench.core.task import make_task
from moabench.language import tiny
from moabench.language.preference import train_preference
from moabench.language.trl_baselines import dpo_trainer, grpo_trainer

STEPS = 40
STEPS_PER_SECOND: dict[tuple[str, str], float] = {}


def moabench_dpo(tmp_path):
    task = make_task("safety", steps=STEPS)
    problem = tiny.preference_problem(task)
    problem.evaluate = lambda policy: [0.0, 0.0]  # time training only
    start = time.perf_counter()
    train_preference(problem, make_algorithm("ls", [1.0, 0.0]), 0, task.params, 2)
    return time.perf_counter() - start


def trl_dpo(tmp_path):
    trainer = dpo_trainer(make_task("safety", steps=STEPS), tmp_path)
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def moabench_grpo(tmp_path):
    task = make_task("math", steps=STEPS, n_eval_prompts=1)  # evaluation: 5 prompts, negligible
    start = time.perf_counter()
    task.run(make_algorithm("ls", [0.6, 0.2, 0.2]), 0)
    return time.perf_counter() - start


def trl_grpo(tmp_path):
    trainer = grpo_trainer(make_task("math", steps=STEPS), [0.6, 0.2, 0.2], 0, tmp_path)
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


RUNS = {
    ("dpo", "trl"): trl_dpo,
    ("dpo", "moabench"): moabench_dpo,
    ("grpo", "trl"): trl_grpo,
    ("grpo", "moabench"): moabench_grpo,
}


@pytest.mark.parametrize(("kind", "trainer"), list(RUNS))
def test_throughput_against_trl(benchmark, kind, trainer, tmp_path):
    tiny.preference_problem(
        make_task("safety")
    )  # reference policies are trained and cached untimed
    tiny.task_reference(make_task("math"), tiny.task_tokenizer(make_task("math")))
    benchmark.group = f"{kind} throughput"
    training_seconds = []

    def timed():
        with one_torch_thread():
            training_seconds.append(RUNS[(kind, trainer)](tmp_path))

    benchmark.pedantic(timed, rounds=3, iterations=1)
    STEPS_PER_SECOND[(kind, trainer)] = STEPS / min(training_seconds)
    benchmark.extra_info["steps_per_second"] = STEPS_PER_SECOND[(kind, trainer)]
    if (kind, "trl") in STEPS_PER_SECOND and trainer == "moabench":
        ratio = STEPS_PER_SECOND[(kind, "moabench")] / STEPS_PER_SECOND[(kind, "trl")]
        benchmark.extra_info["moabench_over_trl"] = ratio
        print(f"\n{kind}: moabench / trl steps per second (best of 3): {ratio:.2f}")

"""Training throughput of moabench's DPO trainer (`ls`, i.e. DPO-LW) against trl's `DPOTrainer`,
side by side on the same tiny model, pairs and batch size, both on one torch thread (as every
moabench run). Target: moabench at least 0.8x trl's steps per second (goal 1x). Both sides time
the training loop only, including their reference log-probabilities (precomputed once in both),
without evaluation. The ratio is printed and stored in the benchmark's extra_info.

Run: pytest benchmarks/test_bench_trl.py --benchmark-only -s
"""

import time

import pytest

from moabench.algorithm import make_algorithm
from moabench.preference import train_preference
from moabench.runner import one_torch_thread
from moabench.task import make_task

STEPS, BATCH = 40, 32
STEPS_PER_SECOND: dict[str, float] = {}


def tiny_safety():
    task = make_task("safety", steps=STEPS, batch_size=BATCH)
    problem = task.tiny_problem()
    problem.evaluate = lambda policy: [0.0, 0.0]  # time training only
    return task, problem


def moabench_training():
    task, problem = tiny_safety()
    algorithm = make_algorithm("ls", [1.0, 0.0])
    start = time.perf_counter()
    train_preference(problem, algorithm, 0, task.params, 2)
    return time.perf_counter() - start


def trl_training(tmp_path):
    import datasets
    from trl import DPOConfig, DPOTrainer

    datasets.disable_progress_bars()

    task, problem = tiny_safety()
    tokenizer = task.tokenizer()
    data, _ = task.preference_data(problem.policy, tokenizer)
    helpful_first = data.signs[0] >= 0  # DPO-LW at w = (1, 0): the helpfulness labels
    rows = [
        {"prompt": p, "chosen": a if first else b, "rejected": b if first else a}
        for p, a, b, first in zip(data.prompts, data.responses_a, data.responses_b, helpful_first)
    ]
    args = DPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=BATCH, max_steps=STEPS,
        learning_rate=task.params.learning_rate, beta=task.params.beta, lr_scheduler_type="constant",
        warmup_steps=0, optim="adamw_torch", weight_decay=0.0, precompute_ref_log_probs=True,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=True, seed=0,
    )  # fmt: skip
    trainer = DPOTrainer(
        model=problem.policy, args=args, train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


@pytest.mark.parametrize("trainer", ["trl", "moabench"])
def test_dpo_throughput_against_trl(benchmark, trainer, tmp_path):
    make_task("safety").tiny_problem()  # the reference policy is trained and cached untimed
    benchmark.group = "dpo-throughput"

    def timed():
        with one_torch_thread():
            return trl_training(tmp_path) if trainer == "trl" else moabench_training()

    seconds = benchmark.pedantic(timed, rounds=3, iterations=1)
    STEPS_PER_SECOND[trainer] = STEPS / seconds
    benchmark.extra_info["steps_per_second"] = STEPS / seconds
    if len(STEPS_PER_SECOND) == 2:
        ratio = STEPS_PER_SECOND["moabench"] / STEPS_PER_SECOND["trl"]
        benchmark.extra_info["moabench_over_trl"] = ratio
        print(f"\nmoabench / trl steps per second: {ratio:.2f}")

"""The tiny language tasks trained by trl's own trainers, to check moabench's trainers against them
(tests) and to measure their relative speed (benchmarks): `DPOTrainer` for DPO-LW at a one-hot
preference, `GRPOTrainer` with `reward_weights` for MORLHF. Same tiny model, data, batch size,
learning rate and KL weight as the moabench run they are compared with, and float32 as moabench
trains (trl turns bfloat16 autocast on by default, on the CPU too, hence `bf16=False`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from moabench.language import tiny
from moabench.language.task import LanguageTask


def dpo_trainer(task: LanguageTask, output_dir: Path, objective: int = 0):
    """trl's DPOTrainer on the task's tiny pairs, labelled by `objective` (DPO-LW at a one-hot
    preference), with the task's batch size, learning rate and beta, reference log-probabilities
    precomputed (as moabench does)."""
    import datasets
    from trl import DPOConfig, DPOTrainer

    datasets.disable_progress_bars()
    tokenizer = tiny.task_tokenizer(task)
    policy = tiny.task_reference(task, tokenizer)
    data, _ = tiny.preference_data(task, policy, tokenizer)
    first = (data.signs[objective] >= 0).tolist()
    rows = [
        {"prompt": p, "chosen": a if f else b, "rejected": b if f else a}
        for p, a, b, f in zip(data.prompts, data.responses_a, data.responses_b, first)
    ]
    params = task.params
    args = DPOConfig(
        output_dir=str(output_dir), per_device_train_batch_size=params.batch_size,
        max_steps=params.steps, learning_rate=params.learning_rate, beta=params.beta,
        lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch", weight_decay=0.0,
        precompute_ref_log_probs=True, report_to=[], save_strategy="no", logging_strategy="no",
        use_cpu=True, bf16=False, dataloader_num_workers=0, disable_tqdm=True, seed=0,
    )  # fmt: skip
    return DPOTrainer(
        model=policy, args=args, train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
    )  # fmt: skip


def grpo_trainer(task: LanguageTask, preference: list[float], seed: int, output_dir: Path):
    """trl's GRPOTrainer for MORLHF on the task: one reward function per objective (the hidden
    rules), `reward_weights` = the preference, summed then group-normalised (trl's default and
    moabench's `ls` default), `group_size` generations per prompt, `prompts_per_step` prompts per
    step, the DAPO token mean (as moabench), KL weight `kl_coef`, no dropout."""
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    datasets.disable_progress_bars()
    params = task.params
    tokenizer = tiny.task_tokenizer(task)
    policy = tiny.task_reference(task, tokenizer)
    prompts = task.sample_prompts(
        np.random.default_rng(seed), params.steps * params.prompts_per_step
    )

    def objective_reward(j: int):
        def reward(prompts: list[str], completions: list[str], **_: object) -> list[float]:
            return task.rewards(list(prompts), list(completions))[:, j].tolist()

        reward.__name__ = task.space.names[j]
        return reward

    args = GRPOConfig(
        output_dir=str(output_dir), per_device_train_batch_size=params.prompts_per_step * params.group_size,
        num_generations=params.group_size, max_completion_length=task.max_response_tokens,
        max_steps=params.steps, learning_rate=params.learning_rate, beta=params.kl_coef,
        epsilon=params.clip_epsilon, num_iterations=params.ppo_epochs, temperature=params.temperature,
        top_p=1.0, top_k=0, reward_weights=list(preference), loss_type="dapo",
        multi_objective_aggregation="sum_then_normalize", scale_rewards="group",
        lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch", weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, disable_dropout=True,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, bf16=False,
        dataloader_num_workers=0, disable_tqdm=True, seed=seed, shuffle_dataset=False,
    )  # fmt: skip
    return GRPOTrainer(
        model=policy, reward_funcs=[objective_reward(j) for j in range(task.space.n_objectives)],
        args=args, train_dataset=datasets.Dataset.from_list([{"prompt": p} for p in prompts]),
        processing_class=tokenizer,
    )  # fmt: skip


def train_and_evaluate(trainer, task: LanguageTask) -> tuple[list[float], float]:
    """(the trained policy's objectives on the task's evaluation prompts, training seconds)."""
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tokenizer = tiny.task_tokenizer(task)
    objectives = tiny.evaluate_policy(task, trainer.model, tokenizer, tiny.evaluation_prompts(task))
    return objectives, seconds

"""Rewards-in-Context's training at the tiny scale (`moabench.algorithms.ric` states the method):
offline supervised training conditioned on each response's z-scores, then rounds of MORS.

The offline set is `offline_samples` responses of the reference policy to the task's training
prompts (drawn with `data_seed`, sampled at the task's temperature) plus as many of its
demonstrations, scored by the task's rules: the tiny counterpart of hh-rlhf's chosen and
rejected responses. Each step is the mean NLL of the responses of `prompts_per_step x group_size`
rows drawn from the current set, each row conditioned on its own scores. MORS samples at
temperature 0.7 (the official top-p 0.9 is not applied). The policy, conditioned on r*(w), is
then sampled like every other policy (`moabench.language.steering`).
"""

from __future__ import annotations

import numpy as np
import torch

from moabench.core.algorithm import SteerableMethod
from moabench.core.task import RunOutput
from moabench.language import tiny
from moabench.language.conditioning import Conditioning
from moabench.language.lm import make_batch, sequence_log_probs
from moabench.language.training import make_optimizer

#: MORS's sampling temperature in the official code
ONLINE_TEMPERATURE = 0.7


def train_ric(task: tiny.TinyTask, method: SteerableMethod, seed: int) -> RunOutput:
    """Train RiC's policy on `task`; the output's policy reads target z-scores."""
    params, options = task.params, method.params
    tokenizer = tiny.task_tokenizer(task)
    policy = tiny.task_reference(task, tokenizer)
    m = task.tiny_space.n_objectives
    conditioning = Conditioning(policy, m)
    data_rng = np.random.default_rng(params.data_seed)
    prompts = task.sample_prompts(data_rng, options.offline_samples)
    responses = tiny.generate_responses(
        policy, tokenizer, prompts, task.max_response_tokens, params.data_seed, params.temperature
    )
    shown_prompts, shown = task.demonstrations(data_rng, options.offline_samples)
    prompts, responses = prompts + shown_prompts, responses + shown
    rewards = tiny.checked_rewards(task, prompts, responses)
    mean, std = rewards.mean(axis=0), rewards.std(axis=0)  # ddof 0, as the official code
    scores = method.z_scores(rewards, mean, std)

    parameters = [p for p in policy.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, parameters)
    generator = torch.Generator().manual_seed(seed)
    rows = params.prompts_per_step * params.group_size
    output = RunOutput(objectives=[])

    def fine_tune(steps: int, texts: tuple[list[str], list[str]], conditions: np.ndarray) -> None:
        policy.train()
        for _ in range(steps):
            index = torch.randint(len(conditions), (rows,), generator=generator)
            batch = make_batch(tokenizer, [texts[0][i] for i in index], [texts[1][i] for i in index])
            conditioning.set(conditions[index.numpy()])
            loss = -sequence_log_probs(policy, batch).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            output.steps += 1
            output.gradient_evaluations += 1
        policy.eval()

    fine_tune(params.steps, (prompts, responses), scores)
    offline_kept = method.keep(scores)
    online: tuple[list[str], list[str], list[np.ndarray]] = ([], [], [])
    goal_rng = np.random.default_rng([seed, 1])
    for round_ in range(options.online_iterations):
        new_prompts = task.sample_prompts(goal_rng, options.online_samples)
        conditioning.set(method.online_goals(goal_rng, options.online_samples, m))
        sampled = tiny.generate_responses(
            policy, tokenizer, new_prompts, task.max_response_tokens,
            seed * 1_000_003 + round_, ONLINE_TEMPERATURE,
        )  # fmt: skip
        obtained = method.z_scores(tiny.checked_rewards(task, new_prompts, sampled), mean, std)
        chosen = method.keep(obtained)
        online[0].extend(p for p, c in zip(new_prompts, chosen) if c)
        online[1].extend(r for r, c in zip(sampled, chosen) if c)
        online[2].extend(obtained[chosen])
        for group in optimizer.param_groups:
            group["lr"] = params.learning_rate * options.online_learning_rate
        texts = (
            online[0] + [p for p, c in zip(prompts, offline_kept) if c],
            online[1] + [r for r, c in zip(responses, offline_kept) if c],
        )
        conditions = np.concatenate([np.reshape(online[2], (-1, m)), scores[offline_kept]])
        fine_tune(max(1, round(params.steps * options.online_steps)), texts, conditions)
    output.policy = policy
    return output

"""Online training in micro-batches (`micro_batch_size`): the same update as the whole rollout in
one pass, for every way the trainer combines objectives, and clear errors where it cannot."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from moabench import make_algorithm, make_task
from moabench.core.determinism import one_torch_thread
from moabench.core.errors import ConfigError
from moabench.language import tiny
from moabench.language.lm import token_log_probs
from moabench.language.online import (
    Rollout,
    log_probs_in_parts,
    micro_batch_parts,
    objective_losses,
    split_rollout,
    train_online,
)
from moabench.runs.runner import resolve_config

RESPONSES = 16  # 4 prompts x 4 responses


def trained_parameters(
    algorithm: str, micro_batch_size: int | None, **params
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tiny safety policy's parameters before and after one online step (two updates on the
    rollout, so that PPO's clip acts in the second) with plain SGD."""
    task = make_task(
        "safety", paradigm="online", steps=1, prompts_per_step=4, group_size=4, ppo_epochs=2,
        optimizer="sgd", learning_rate=0.05, micro_batch_size=micro_batch_size, **params,
    )  # fmt: skip
    problem = dataclasses.replace(tiny.online_problem(task), evaluate=lambda: [0.0, 0.0])
    before = torch.cat([p.detach().flatten() for p in problem.policy.parameters()])
    rule = make_algorithm(algorithm, [0.7, 0.3])
    with one_torch_thread():
        train_online(problem, rule, seed=0, params=task.params, m=2)
    return before, torch.cat([p.detach().flatten() for p in problem.policy.parameters()])


@pytest.mark.parametrize(
    ("algorithm", "params"),
    [
        ("upgrad", {}),  # Gram rule, Jacobian accumulated over the micro-batches
        ("upgrad", {"gram_parameters": "last-block"}),  # Gram subset, then a second pass
        ("mgda", {"kl_in_reward": True}),
        ("ls", {}),  # MORLHF: one scalarised reward, one loss
        ("pama", {"advantage": "reinforce"}),  # advantages combined per token (GRPO: none here)
        ("dynamic-weighting", {}),  # observes the Gram matrix, then a scalarised reward
    ],
)
def test_micro_batches_give_the_whole_rollouts_update(algorithm, params):
    before, whole = trained_parameters(algorithm, None, **params)
    _, micro = trained_parameters(algorithm, 4, **params)
    assert not torch.allclose(whole, before, atol=1e-6)  # the step moved the policy
    torch.testing.assert_close(micro, whole, rtol=0, atol=1e-6)


def test_the_parts_losses_average_to_the_whole_rollouts():
    task = make_task("safety", paradigm="online", prompts_per_step=2, group_size=4)
    problem = tiny.online_problem(task)
    policy = problem.policy.eval()
    prompts = [p for p in problem.prompts(np.random.default_rng(0), 2) for _ in range(4)]
    batch = problem.sample(prompts, 3).batch
    assert len(set(batch.attention_mask.sum(dim=1).tolist())) > 1  # rows of different lengths
    mask = batch.response_mask[:, 1:].float()
    parts = micro_batch_parts(len(prompts), 2)

    def rollout(in_parts: list[torch.Tensor]) -> Rollout:
        return Rollout(
            batch, mask, log_probs_in_parts(functools.partial(token_log_probs, policy), batch, in_parts),
            log_probs_in_parts(problem.reference_log_probs, batch, in_parts), mask.sum(),
        )  # fmt: skip

    whole_parts = micro_batch_parts(len(prompts), len(prompts))
    assert len(whole_parts) == 1 and len(parts) == 4
    torch.testing.assert_close(
        rollout(parts).old_log_probs * mask, rollout(whole_parts).old_log_probs * mask
    )
    advantage = torch.randn(2, len(prompts), generator=torch.Generator().manual_seed(0))
    params = task.params
    with torch.no_grad():
        whole = objective_losses(policy, rollout(whole_parts), advantage, params)
        pieces = [
            objective_losses(policy, part, part_advantage, params)
            for part, part_advantage in split_rollout(rollout(parts), advantage, parts)
        ]
    torch.testing.assert_close(torch.stack(pieces).mean(dim=0), whole)
    assert pieces[0].shape == whole.shape


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"micro_batch_size": 5}, "micro_batch_size 5 must divide the 32 responses of a step"),
        ({"micro_batch_size": 64}, "micro_batch_size 64 must divide the 32 responses"),
    ],
)
def test_micro_batches_that_do_not_divide_the_rollout_are_refused(params, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("upgrad", "safety", [0.5, 0.5], task_params={"paradigm": "online", **params})


def test_preference_micro_batches_still_divide_the_batch():
    with pytest.raises(ConfigError, match="micro_batch_size 5 must divide batch_size 32"):
        resolve_config("upgrad", "safety", [0.5, 0.5], task_params={"micro_batch_size": 5})
    resolve_config("upgrad", "math", [0.4, 0.3, 0.3], task_params={"micro_batch_size": 8})


def test_pama_batch_level_refuses_micro_batches():
    task = make_task("safety", paradigm="online", steps=1, micro_batch_size=8)
    problem = tiny.online_problem(task)
    rule = make_algorithm("pama", [0.5, 0.5], level="batch")
    with pytest.raises(ConfigError, match="level='batch' and micro_batch_size=8"):
        train_online(problem, rule, seed=0, params=task.params, m=2)


def test_the_micro_batches_widths_take_one_host_copy_per_pass(monkeypatch):
    """The trainer gives `select_rows` each micro-batch's width, read from one host copy of the
    rows' lengths per pass over the rollout (one device sync, not one per micro-batch)."""
    from moabench.language import online

    asked = []
    select_rows = online.select_rows

    def spied(batch, index, trim=True, width=None):
        asked.append(width)
        return select_rows(batch, index, trim, width)

    monkeypatch.setattr(online, "select_rows", spied)
    trained_parameters("upgrad", 4)
    assert asked and None not in asked

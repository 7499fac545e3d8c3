"""The policy a steerable method makes for a preference w from its experts, at the tiny scale.

`SteerableMethod.combines` names what is combined with the weights w (`SteerableMethod.combine`):
- "parameters" (Rewarded Soups): one model whose every parameter is sum_i w_i theta_i, sampled
  like any trained policy;
- "log_probs" (MOD): each next token drawn from softmax(sum_i w_i log pi_i(. | x, y_<t) / T), one
  forward pass of every expert per token (`sample_mixture`).
- "conditioning" (a preference-conditioned policy): the one trained policy, told w
  (`moabench.language.conditioning`); "reward_conditioning" (Rewards-in-Context): told the
  target scores that w maps to (`SteerableMethod.targets`).
Each is evaluated exactly as a trained policy is: the task's held-out prompts, the evaluation
seed, the hidden rules' mean score per objective.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch

from moabench.core.algorithm import SteerableMethod
from moabench.core.task import RunOutput
from moabench.language import tiny
from moabench.language.lm import diverged_sampling
from moabench.language.training import EVALUATION_SEED


def parameter_soup(method: SteerableMethod, experts: Sequence[torch.nn.Module]) -> torch.nn.Module:
    """A copy of the first expert whose parameters and buffers are `method.combine` of the
    experts' (integer buffers, which no expert trains, are the first expert's)."""
    states = [expert.state_dict() for expert in experts]
    soup = copy.deepcopy(experts[0])
    soup.load_state_dict(
        {
            name: method.combine([state[name] for state in states])
            if value.is_floating_point()
            else value
            for name, value in states[0].items()
        }
    )
    return soup


def sample_mixture(
    next_log_probs: Callable[[list[torch.Tensor]], torch.Tensor],
    experts: Sequence[torch.nn.Module],
    tokenizer,  # noqa: ANN001 - a transformers tokenizer
    prompts: Sequence[str],
    max_new_tokens: int,
    seed: int,
    temperature: float = 1.0,
) -> list[str]:
    """One response per prompt, each token drawn from softmax(next_log_probs(lp) / temperature)
    where lp holds every expert's next-token log-probabilities; the same draws as
    `tiny.generate_responses` (HF `generate`) makes for one expert and the identity mixture."""
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    encoded = tokenizer(list(prompts), add_special_tokens=False, padding=True, return_tensors="pt")
    ids, attention = encoded["input_ids"], encoded["attention_mask"]
    unfinished = torch.ones(len(ids), dtype=torch.bool)
    start = ids.shape[1]
    with torch.no_grad(), diverged_sampling():
        for _ in range(max_new_tokens):
            positions = (attention.cumsum(-1) - 1).masked_fill(attention == 0, 1)
            log_probs = [
                torch.log_softmax(
                    expert(input_ids=ids, attention_mask=attention, position_ids=positions)
                    .logits[:, -1].float(),
                    dim=-1,
                )
                for expert in experts
            ]
            scores = next_log_probs(log_probs) / temperature
            token = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
            token = torch.where(unfinished, token, tokenizer.pad_token_id)
            ids = torch.cat([ids, token[:, None]], dim=1)
            attention = torch.cat([attention, torch.ones_like(token)[:, None]], dim=1)
            unfinished &= token != tokenizer.eos_token_id
            if not unfinished.any():
                break
    return tiny.responses_from_ids(tokenizer, ids[:, start:])


def steer(task: tiny.TinyTask, method: SteerableMethod, experts: list[torch.nn.Module]) -> RunOutput:
    """The objectives of `method`'s policy for its preference, evaluated as a trained policy's."""
    tokenizer = tiny.task_tokenizer(task)
    prompts = tiny.evaluation_prompts(task)
    for expert in experts:
        expert.eval()
    if method.combines in ("conditioning", "reward_conditioning"):
        (policy,) = experts
        policy.conditioning.set(
            method.preference if method.combines == "conditioning" else method.targets()
        )
        objectives = tiny.evaluate_policy(task, policy, tokenizer, prompts)
    elif method.combines == "parameters":
        objectives = tiny.evaluate_policy(task, parameter_soup(method, experts), tokenizer, prompts)
    else:
        responses = sample_mixture(
            method.combine, experts, tokenizer, prompts, task.max_response_tokens, EVALUATION_SEED
        )
        objectives = tiny.checked_rewards(task, prompts, responses).mean(axis=0).tolist()
    return RunOutput(objectives=objectives, trajectory=[objectives], trajectory_steps=[0])

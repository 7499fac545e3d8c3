"""The policy a steerable method makes for a preference w from its shared training.

`SteerableMethod.combines` names what is combined with the weights w (`SteerableMethod.combine`):
- "parameters" (Rewarded Soups): one model whose every parameter is sum_i w_i theta_i, sampled
  like any trained policy;
- "log_probs" (MOD): each next token drawn from softmax(sum_i w_i log pi_i(. | x, y_<t) / T), one
  forward pass of every expert per token (`sample_mixture`).
- "conditioning" (a preference-conditioned policy): the one trained policy, told w
  (`moabench.language.conditioning`); "reward_conditioning" (Rewards-in-Context): told the
  target scores that w maps to (`SteerableMethod.targets`).
Each is evaluated exactly as a trained policy is: the task's held-out prompts, the evaluation
seed, the hidden rules' mean score per objective (`steer`), or at the Hugging Face scales the
setup's scorers (`steer_hub`). There the experts are LoRA adapters (peft `save_pretrained`)
loaded beside the base policy's own, the base loaded once: the soup is one more adapter whose
merged delta is sum_i w_i s B_i A_i (`adapter_soup`), and MOD switches adapters with
`set_adapter` before each expert's forward pass (`adapter_expert`; m forwards per token, as the
official code, and the memory of one model, where m models would take m times it). Fully
fine-tuned experts (lora_rank=0) are whole models, mixed as at the tiny scale.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moabench.core.algorithm import SteerableMethod
from moabench.core.task import RunOutput
from moabench.language import hub, loading, tiny
from moabench.language.conditioning import Conditioning
from moabench.language.lm import diverged_sampling
from moabench.language.ric import score_text
from moabench.language.training import EVALUATION_SEED

#: a next-token mixture: every expert's next-token log-probabilities -> the scores to sample from
Mixture = Callable[[list[torch.Tensor]], torch.Tensor]


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
    next_log_probs: Mixture,
    experts: Sequence[Callable[..., Any]],
    tokenizer,  # noqa: ANN001 - a transformers tokenizer
    prompts: Sequence[str],
    max_new_tokens: int,
    seed: int,
    temperature: float = 1.0,
) -> list[str]:
    """The tiny scale's responses of `mixture_tokens`, one per prompt, with a fixed seed; the
    same draws as `tiny.generate_responses` makes for one expert and the identity mixture."""
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    encoded = tokenizer(list(prompts), add_special_tokens=False, padding=True, return_tensors="pt")
    new_tokens = mixture_tokens(
        next_log_probs, experts, encoded["input_ids"], encoded["attention_mask"], max_new_tokens,
        [tokenizer.eos_token_id], tokenizer.pad_token_id, temperature,
    )  # fmt: skip
    return tiny.responses_from_ids(tokenizer, new_tokens)


def mixture_tokens(
    next_log_probs: Mixture,
    experts: Sequence[Callable[..., Any]],
    ids: torch.Tensor,
    attention: torch.Tensor,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """New token ids (rows, <= max_new_tokens) after left-padded prompts, each drawn from
    softmax(next_log_probs(lp) / temperature), lp holding every expert's next-token
    log-probabilities (an expert: a causal LM, or anything called as one); a finished row is
    padded, as HF `generate` pads it."""
    unfinished = torch.ones(len(ids), dtype=torch.bool, device=ids.device)
    start = ids.shape[1]
    stops = torch.as_tensor(list(eos_token_ids), device=ids.device)
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
            token = torch.where(unfinished, token, pad_token_id)
            ids = torch.cat([ids, token[:, None]], dim=1)
            attention = torch.cat([attention, torch.ones_like(token)[:, None]], dim=1)
            unfinished &= ~torch.isin(token, stops)
            if not unfinished.any():
                break
    return ids[:, start:]


def steer(
    task: tiny.TinyTask, method: SteerableMethod, experts: list[torch.nn.Module]
) -> RunOutput:
    """The tiny scale: the objectives of `method`'s policy for its preference, evaluated as a
    trained policy's."""
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


# --- the Hugging Face scales --------------------------------------------------------------------


def adapter_soup(method: SteerableMethod, policy: Any, adapters: Sequence[str]) -> Any:
    """`policy` (peft) with the active adapter "soup": peft's `add_weighted_adapter` of
    `adapters` with the weights w, `combination_type="cat"`, whose merged delta is exactly
    sum_i w_i s_i B_i A_i (Rewarded Soups' interpolation of the merged weights)."""
    weights = [float(w) for w in method.preference]
    policy.add_weighted_adapter(list(adapters), weights, "soup", combination_type="cat")
    policy.set_adapter("soup")
    return policy


def adapter_expert(policy: Any, adapter: str) -> Callable[..., Any]:
    """Expert `adapter` of a peft `policy` holding every expert: `set_adapter`, then its
    forward pass."""

    def forward(**inputs: Any) -> Any:
        policy.set_adapter(adapter)
        return policy(**inputs)

    return forward


def hub_mixture_responses(
    method: SteerableMethod,
    experts: Sequence[Callable[..., Any]],
    pieces: hub.HubPieces,
    params: Any,
    prompts: list[str],
    seed: int,
) -> list[str]:
    """MOD's responses at a Hugging Face scale, sampled as `hub.generate_text` samples a policy's
    (the same prompts, batches, truncation, seed and stop tokens, temperature 1)."""
    torch.manual_seed(seed)
    tokenizer = pieces.tokenizer
    stops = hub.eos_token_ids(pieces.policy, tokenizer)
    responses = []
    for encoded in hub.encoded_batches(
        tokenizer, pieces.formatted(prompts), params.generation_batch_size or params.batch_size,
        params.max_length - params.max_new_tokens, pieces.device,
    ):  # fmt: skip
        new_tokens = mixture_tokens(
            method.combine, experts, encoded["input_ids"], encoded["attention_mask"],
            params.max_new_tokens, stops, tokenizer.pad_token_id,
        )  # fmt: skip
        responses += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return responses


def evaluation_scores(pieces: hub.HubPieces, responses: list[str]) -> list[float]:
    """The mean score per objective of responses to the held-out prompts, as `evaluate`'s."""
    scores = pieces.scores(pieces.eval_prompts, responses, evaluation=True)
    return np.asarray(scores).mean(axis=0).tolist()


def steer_hub(task: Any, method: SteerableMethod, kept: list[Path]) -> RunOutput:
    """A Hugging Face scale: the objectives of `method`'s policy for its preference from the
    policies kept in `kept` (`LanguageTask.load_policy`: the experts, or the one conditioned
    policy), evaluated as a trained policy's; the reference policy is evaluated first, which
    measures the objective space as a training run does."""
    params = task.params
    lora = params.lora_rank > 0
    pieces = task.hub_pieces()
    policy = pieces.policy
    pieces.evaluate(policy)  # its fresh adapter is zero: the reference, as in training
    policy.eval()
    if lora:
        adapters = [f"expert-{i}" for i in range(1, len(kept) + 1)]
        for adapter, path in zip(adapters, kept):
            loading.load_adapter(policy, str(path), adapter, pieces.device)
        experts = [adapter_expert(policy, adapter) for adapter in adapters]
    else:
        models = [loading.load_causal_model(str(path), dtype=policy.dtype) for path in kept]
        experts = [model.to(pieces.device).eval() for model in models]
    if method.combines in ("conditioning", "reward_conditioning"):
        (path,) = kept
        conditioned = policy if lora else experts[0]
        if lora:
            policy.set_adapter(adapters[0])
        if method.combines == "conditioning":
            Conditioning.load(conditioned, path).set(method.preference)
            objectives = pieces.evaluate(conditioned)
        else:  # Rewards-in-Context: the targets r*(w) written into the prompts
            shown = [score_text(prompt, method.targets()) for prompt in pieces.eval_prompts]
            responses = pieces.sample(conditioned, shown, EVALUATION_SEED).responses
            objectives = evaluation_scores(pieces, responses)
    elif method.combines == "parameters":
        soup = adapter_soup(method, policy, adapters) if lora else parameter_soup(method, experts)
        objectives = pieces.evaluate(soup)
    else:
        responses = hub_mixture_responses(
            method, experts, pieces, params, pieces.eval_prompts, EVALUATION_SEED
        )
        objectives = evaluation_scores(pieces, responses)
    return RunOutput(objectives=objectives, trajectory=[objectives], trajectory_steps=[0])

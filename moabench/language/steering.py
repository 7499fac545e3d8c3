"""The policy a steerable method makes for a preference w from its experts, at the tiny scale.

`SteerableMethod.combines` names what is combined with the weights w (`SteerableMethod.combine`):
- "parameters" (Rewarded Soups): one model whose every parameter is sum_i w_i theta_i, sampled
  like any trained policy;
- "log_probs" (MOD): each next token drawn from softmax(sum_i w_i log pi_i(. | x, y_<t) / T), one
  forward pass of every expert per token (`sample_mixture`).
- "conditioning" (a preference-conditioned policy): the one trained policy, told w
  (`PreferenceConditioning`).
Each is evaluated exactly as a trained policy is: the task's held-out prompts, the evaluation
seed, the hidden rules' mean score per objective.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

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


class PreferenceConditioning:
    """How a tiny policy reads a preference w: the learned map `preference_embedding` (m x d,
    zero at the start, so the conditioned policy starts as the reference) takes w to a vector
    added to every input embedding. `set(w)` chooses the preference of the next forward passes."""

    FILE = "preference_conditioning.pt"

    def __init__(self, model: torch.nn.Module, m: int) -> None:
        embeddings = model.get_input_embeddings()
        model.preference_embedding = torch.nn.Parameter(
            torch.zeros(m, embeddings.embedding_dim, dtype=embeddings.weight.dtype)
        )
        model.preference_conditioning = self
        self.model, self.preference = model, torch.full((m,), 1.0 / m)
        embeddings.register_forward_hook(self._add)

    def _add(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + self.preference.to(output.dtype) @ self.model.preference_embedding

    def set(self, preference) -> None:  # noqa: ANN001 - a sequence of m floats
        self.preference = torch.as_tensor(preference, dtype=torch.float32)

    def save(self, path: Path) -> None:
        torch.save(self.model.preference_embedding.detach().clone(), path / self.FILE)

    @classmethod
    def load(cls, model: torch.nn.Module, path: Path) -> PreferenceConditioning | None:
        """The conditioning kept beside a saved policy, attached to `model`; None if there is none."""
        if not (path / cls.FILE).exists():
            return None
        weights = torch.load(path / cls.FILE)
        conditioning = cls(model, weights.shape[0])
        with torch.no_grad():
            model.preference_embedding.copy_(weights)
        return conditioning


def steer(task: tiny.TinyTask, method: SteerableMethod, experts: list[torch.nn.Module]) -> RunOutput:
    """The objectives of `method`'s policy for its preference, evaluated as a trained policy's."""
    tokenizer = tiny.task_tokenizer(task)
    prompts = tiny.evaluation_prompts(task)
    for expert in experts:
        expert.eval()
    if method.combines == "conditioning":
        (policy,) = experts
        policy.preference_conditioning.set(method.preference)
        objectives = tiny.evaluate_policy(task, policy, tokenizer, prompts)
    elif method.combines == "parameters":
        objectives = tiny.evaluate_policy(task, parameter_soup(method, experts), tokenizer, prompts)
    else:
        responses = sample_mixture(
            method.combine, experts, tokenizer, prompts, task.max_response_tokens, EVALUATION_SEED
        )
        objectives = tiny.checked_rewards(task, prompts, responses).mean(axis=0).tolist()
    return RunOutput(objectives=objectives, trajectory=[objectives], trajectory_steps=[0])

"""Rewards-in-Context's training (`moabench.algorithms.ric` states the method): offline
supervised training conditioned on each response's z-scores, then rounds of MORS.

Each step is the mean NLL of the responses of `prompts_per_step x group_size` rows drawn from
the current set, each row conditioned on its own scores. MORS samples at temperature 0.7 (the
official top-p 0.9 is not applied). The policy, conditioned on r*(w), is then sampled like every
other policy (`moabench.language.steering`). What differs between the scales is a `RicScale`:
- tiny (`tiny_scale`): the offline set is `offline_samples` responses of the reference policy to
  the task's training prompts (drawn with `data_seed`, sampled at the task's temperature) plus as
  many of its demonstrations, scored by the task's rules (the tiny counterpart of hh-rlhf's
  chosen and rejected responses); the scores reach the model through `Conditioning` (a
  word-level vocabulary has no number tokens);
- Hugging Face (`hub_scale`): the offline set is `offline_samples` responses of the reference
  policy to training prompts plus as many of the dataset's responses (chosen and rejected, as
  the official code's hh-rlhf set), scored by the setup's scorers; the scores are text at the
  end of the user's turn, as in the official prompts (`score_text`), which the LoRA adapters
  learn to read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from moabench.core.algorithm import SteerableMethod
from moabench.core.task import RunOutput
from moabench.language import tiny
from moabench.language.conditioning import Conditioning
from moabench.language.lm import make_batch, sequence_log_probs
from moabench.language.training import checked_scores, make_optimizer

#: MORS's sampling temperature in the official code
ONLINE_TEMPERATURE = 0.7


@dataclass
class RicScale:
    """What RiC's training reads of a scale: its policy, the offline set of `n` (prompts,
    responses), `n` training prompts, responses sampled conditioned on rows of z-scores (seed,
    temperature), the mean NLL of responses conditioned on theirs, and the rewards (n, m)."""

    policy: torch.nn.Module
    offline: Callable[[int], tuple[list[str], list[str]]]
    prompts: Callable[[np.random.Generator, int], list[str]]
    sample: Callable[[list[str], np.ndarray, int, float], list[str]]
    nll: Callable[[list[str], list[str], np.ndarray], torch.Tensor]
    rewards: Callable[[list[str], list[str]], np.ndarray]


def score_text(prompt: str, scores: Sequence[float]) -> str:
    """`prompt` followed by its scores as the official prompts write them:
    "... <rm1_score>: 0.5 <rm2_score>: -0.3"."""
    written = " ".join(f"<rm{i}_score>: {score:.1f}" for i, score in enumerate(scores, start=1))
    return f"{prompt} {written}"


def tiny_scale(task: tiny.TinyTask) -> RicScale:
    tokenizer = tiny.task_tokenizer(task)
    policy = tiny.task_reference(task, tokenizer)
    conditioning = Conditioning(policy, task.tiny_space.n_objectives)
    params, length = task.params, task.max_response_tokens

    def offline(n: int) -> tuple[list[str], list[str]]:
        data_rng = np.random.default_rng(params.data_seed)
        prompts = task.sample_prompts(data_rng, n)
        responses = tiny.generate_responses(
            policy, tokenizer, prompts, length, params.data_seed, params.temperature
        )
        shown_prompts, shown = task.demonstrations(data_rng, n)
        return prompts + shown_prompts, responses + shown

    def sample(prompts: list[str], goals: np.ndarray, seed: int, temperature: float) -> list[str]:
        conditioning.set(goals)
        return tiny.generate_responses(policy, tokenizer, prompts, length, seed, temperature)

    def nll(prompts: list[str], responses: list[str], scores: np.ndarray) -> torch.Tensor:
        batch = make_batch(tokenizer, prompts, responses)
        conditioning.set(scores)
        return -sequence_log_probs(policy, batch).mean()

    def rewards(prompts: list[str], responses: list[str]) -> np.ndarray:
        return tiny.checked_rewards(task, prompts, responses)

    return RicScale(policy, offline, task.sample_prompts, sample, nll, rewards)


def hub_scale(task) -> RicScale:  # noqa: ANN001 - a LanguageTask at a Hugging Face scale
    pieces, params = task.hub_pieces(), task.params
    policy, training = pieces.policy, pieces.training_prompts

    def prompts(rng: np.random.Generator, n: int) -> list[str]:
        return [training[i] for i in rng.integers(len(training), size=n)]

    def offline(n: int) -> tuple[list[str], list[str]]:
        asked = prompts(np.random.default_rng(params.data_seed), n)
        responses = pieces.sample(policy, asked, params.data_seed, params.temperature).responses
        data = pieces.data
        if data is not None:  # the dataset's responses, each pair's two in turn
            pairs = zip(data.prompts, data.responses_a, data.responses_b)
            shown = [(p, r) for p, a, b in pairs for r in (a, b)][:n]
            asked, responses = asked + [p for p, _ in shown], responses + [r for _, r in shown]
        return asked, responses

    def conditioned(prompts_: list[str], scores: np.ndarray) -> list[str]:
        return [score_text(p, s) for p, s in zip(prompts_, scores)]

    def sample(prompts_: list[str], goals: np.ndarray, seed: int, temperature: float) -> list[str]:
        return pieces.sample(policy, conditioned(prompts_, goals), seed, temperature).responses

    def nll(prompts_: list[str], responses: list[str], scores: np.ndarray) -> torch.Tensor:
        shown = pieces.formatted(conditioned(prompts_, scores))
        batch = make_batch(pieces.tokenizer, shown, responses, params.max_length)
        return -sequence_log_probs(policy, batch.to(pieces.device)).mean()

    def rewards(prompts_: list[str], responses: list[str]) -> np.ndarray:
        scores = pieces.scores(prompts_, responses, evaluation=False)
        return checked_scores(scores, task.tiny_space.names, f"task {task.name!r}: rewards()")

    policy.eval()
    return RicScale(policy, offline, prompts, sample, nll, rewards)


def train_ric(task, method: SteerableMethod, seed: int) -> RunOutput:  # noqa: ANN001 - a task
    """Train RiC's policy on `task` at its scale; the output's policy reads target z-scores."""
    params, options = task.params, method.params
    scale = tiny_scale(task) if params.scale == "tiny" else hub_scale(task)
    policy, m = scale.policy, task.tiny_space.n_objectives
    prompts, responses = scale.offline(options.offline_samples)
    rewards = scale.rewards(prompts, responses)
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
            loss = scale.nll(
                [texts[0][i] for i in index], [texts[1][i] for i in index],
                conditions[index.numpy()],
            )  # fmt: skip
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
        new_prompts = scale.prompts(goal_rng, options.online_samples)
        goals = method.online_goals(goal_rng, options.online_samples, m)
        sampled = scale.sample(new_prompts, goals, seed * 1_000_003 + round_, ONLINE_TEMPERATURE)
        obtained = method.z_scores(scale.rewards(new_prompts, sampled), mean, std)
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

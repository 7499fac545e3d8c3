"""`summarization`: quality vs conciseness, optionally faithfulness (Reddit TL;DR, tiny scale).

A prompt lists the source's facts ("summarize river storm farm lake road"); a summary is a
sequence of words. Hidden rules, each in [0, 1]:
- quality: the fraction of the source's facts the summary covers;
- conciseness: 1 - min(length, 8) / 8;
- faithfulness (with `n_objectives=3`): the fraction of the summary's words found in the source.
Covering more of the source costs length; words not in the source cost faithfulness. The reference
policy imitates summaries of random size, in random order, sometimes with words not in the source.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from moabench.core.task import ObjectiveSpace, register_task
from moabench.language import (
    LanguageParams,
    LanguageTask,
    LengthScorer,
    PaperSetup,
    RewardModelScorer,
)
from moabench.language.setups import BOS, SEP

FACTS = (
    "sun", "rain", "wind", "snow", "river", "hill", "city", "farm",
    "road", "bridge", "storm", "field", "lake", "tower", "market", "forest",
)  # fmt: skip
UNFAITHFUL = ("very", "maybe", "also", "indeed")
SOURCE_FACTS = 5
MAX_LENGTH = 8


def source_facts(prompt: str) -> list[str]:
    return prompt.split()[2:-1]


def quality(prompt: str, summary: str) -> float:
    source = set(source_facts(prompt))
    return len(source & set(summary.split())) / len(source)


def conciseness(summary: str) -> float:
    return 1 - min(len(summary.split()), MAX_LENGTH) / MAX_LENGTH


def faithfulness(prompt: str, summary: str) -> float:
    words = summary.split()
    if not words:
        return 1.0
    source = set(source_facts(prompt))
    return sum(w in source for w in words) / len(words)


class SummarizationParams(LanguageParams):
    n_objectives: Literal[2, 3] = Field(2, description="3 adds faithfulness")


@register_task("summarization")
class Summarization(LanguageTask):
    """Quality vs conciseness (+ faithfulness) of summaries of listed facts (tiny: rule rewards)."""

    Params = SummarizationParams

    paper_setups = {
        "paper": PaperSetup(
            policy="Qwen/Qwen3-4B-Base",
            dataset="RACOo/RedditSummary-Alignment",
            dataset_format="signed",
            sign_columns={"quality": "raco_s_quality", "conciseness": "raco_s_verbosity"},
            scorers={
                "quality": RewardModelScorer("Tristan/gpt2_reward_summarization"),
                "conciseness": LengthScorer(),
                "faithfulness": RewardModelScorer(
                    "CogComp/bart-faithful-summary-detector",
                    source_pair=True,
                    label=1,
                    probability=True,
                ),
            },
            defaults=dict(
                steps=1000,
                batch_size=64,
                micro_batch_size=4,  # 8 pairs of 1,024 tokens: about 101 GiB (BENCHMARKS.md)
                learning_rate=2e-5,
                beta=0.2,
                n_pairs=10_000,
                n_eval_prompts=200,
                max_length=1024,
                max_new_tokens=128,
            ),
        ),
    }

    @property
    def tiny_space(self) -> ObjectiveSpace:
        m = self.params.n_objectives
        names = ("quality", "conciseness", "faithfulness")[:m]
        return ObjectiveSpace(names=names, maximize=(True,) * m, ideal=(1.0,) * m, nadir=(0.0,) * m)

    def vocabulary(self) -> list[str]:
        return ["summarize", *FACTS, *UNFAITHFUL]

    def sample_prompts(self, generator: np.random.Generator, n: int) -> list[str]:
        return [
            f"{BOS} summarize {' '.join(generator.choice(FACTS, SOURCE_FACTS, replace=False))} {SEP}"
            for _ in range(n)
        ]

    def demonstrations(self, rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
        prompts = self.sample_prompts(rng, n)
        responses = []
        for prompt in prompts:
            words = list(rng.permutation(source_facts(prompt))[: rng.integers(0, SOURCE_FACTS + 1)])
            for _ in range(rng.integers(0, 3)):
                words.insert(rng.integers(0, len(words) + 1), str(rng.choice(UNFAITHFUL + FACTS)))
            responses.append(" ".join(words[:MAX_LENGTH]))
        return prompts, responses

    def rewards(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        scores = [
            [quality(p, r), conciseness(r), faithfulness(p, r)] for p, r in zip(prompts, responses)
        ]
        return np.array(scores)[:, : self.params.n_objectives]

"""`math`: accuracy vs conciseness vs clarity (the dynamic-reward-weighting paper's trade-off on
MATH-500, tiny scale; online training only).

A prompt asks for a sum of two digits ("add 3 4"); an answer is marked "answer N" (the paper's
boxed answer) and may show its work with a step marker ("step 3 plus 4 answer 7"). Hidden rules,
each in [0, 1]:
- accuracy: 1 when the first marked answer is the correct sum;
- conciseness: 1 - min(length, 8) / 8;
- clarity: half for a marked answer, half for a step marker.
Showing steps makes an answer clearer and longer. The reference policy imitates worked answers
(mostly right), bare marked answers (right less often), unmarked numbers and rambling ones, so it
succeeds sometimes but not always.
"""

from __future__ import annotations

import numpy as np

from moabench.algorithm import Paradigm
from moabench.preference import LanguageTask
from moabench.task import ObjectiveSpace, register_task
from moabench.tiny_lm import BOS, SEP

DIGITS = tuple(str(d) for d in range(10))
MAX_OPERAND = 4  # sums stay single digits
MAX_LENGTH = 8


def operands(prompt: str) -> tuple[int, int]:
    _, _, a, b, _ = prompt.split()
    return int(a), int(b)


def marked_answer(response: str) -> str | None:
    words = response.split()
    if "answer" in words:
        i = words.index("answer")
        if i + 1 < len(words) and words[i + 1] in DIGITS:
            return words[i + 1]
    return None


def accuracy(prompt: str, response: str) -> float:
    return float(marked_answer(response) == str(sum(operands(prompt))))


def conciseness(response: str) -> float:
    return 1 - min(len(response.split()), MAX_LENGTH) / MAX_LENGTH


def clarity(response: str) -> float:
    return 0.5 * (marked_answer(response) is not None) + 0.5 * ("step" in response.split())


@register_task("math")
class Math(LanguageTask):
    """Accuracy vs conciseness vs clarity on digit sums (tiny: rule rewards; online only)."""

    paradigms = (Paradigm.ONLINE,)
    tiny_space = ObjectiveSpace(
        names=("accuracy", "conciseness", "clarity"),
        maximize=(True, True, True),
        ideal=(1.0, 1.0, 1.0),
        nadir=(0.0, 0.0, 0.0),
    )

    def vocabulary(self) -> list[str]:
        return ["add", *DIGITS, "plus", "step", "answer", "hmm", "so"]

    def sample_prompts(self, generator: np.random.Generator, n: int) -> list[str]:
        pairs = generator.integers(0, MAX_OPERAND + 1, size=(n, 2))
        return [f"{BOS} add {a} {b} {SEP}" for a, b in pairs]

    def demonstrations(self, rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
        prompts = self.sample_prompts(rng, n)
        responses = []
        for prompt in prompts:
            a, b = operands(prompt)
            style = rng.choice(4, p=[0.4, 0.4, 0.1, 0.1])
            right = rng.random() < (0.9 if style in (0, 3) else 0.4)
            answer = str(a + b) if right else str(rng.integers(0, 2 * MAX_OPERAND + 1))
            worked = f"step {a} plus {b} answer {answer}"
            responses.append((worked, f"answer {answer}", answer, f"hmm so {worked}")[style])
        return prompts, responses

    def rewards(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return np.array(
            [[accuracy(p, r), conciseness(r), clarity(r)] for p, r in zip(prompts, responses)]
        )

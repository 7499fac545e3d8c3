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

Scale `paper` (the paper's setup): HuggingFaceH4/MATH-500 problems with Qwen/Qwen3-8B, each
problem followed by the paper's instruction to think step by step and box the final answer; the
paper's three rewards, each 0 or 1:
- accuracy: the last \\boxed{...} answer is equivalent to the reference answer (math-verify);
- conciseness: the response is shorter than the running mean length (`RunningMeanLengthScorer`);
- clarity: a boxed answer and a step-by-step layout (two or more enumerated or bulleted steps, or
  two or more ordinal words such as "first", "then", "next").
"""

from __future__ import annotations

import logging
import re

import numpy as np

from moabench.core.algorithm import Paradigm
from moabench.core.task import ObjectiveSpace, register_task
from moabench.language import LanguageTask, PaperSetup, RuleScorer, RunningMeanLengthScorer
from moabench.language.setups import BOS, SEP

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


# --- the paper scale's rules ----------------------------------------------------------------------

BOXED = "\\boxed{"
INSTRUCTION = " Let's think step by step and output the final answer within \\boxed{}."
#: a step marker at the start of a line or after whitespace: "Step 2:", "1.", "(b)", "iv)", "- "
ENUMERATED_STEP = re.compile(
    r"(?:^|\s|\()(?:step\s*)?(?:\d+|[a-z]|[ivx]+)[).:-]|(?:^|\s)[-*•]\s", re.IGNORECASE
)
ORDINAL_WORD = re.compile(
    r"\b(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|next|then)\b",
    re.IGNORECASE,
)


def last_boxed(text: str) -> str | None:
    """The contents of the last \\boxed{...} in `text` (braces balanced), or None."""
    start = text.rfind(BOXED)
    if start < 0:
        return None
    depth, begin = 1, start + len(BOXED)
    for i in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i].strip() or None
    return None


def boxed_answer_accuracy(response: str, reference_answer: str) -> float:
    """1 when the last boxed answer is mathematically equivalent to the reference (math-verify,
    which parses LaTeX into sympy: \\dfrac{1}{2}, 0.5 and \\frac12 agree)."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its notice that timeouts are off
    answer = last_boxed(response)
    if answer is None:
        return 0.0
    # no signal-based timeouts: they only work on the main thread (not in Ray or sweep workers)
    gold = parse(f"${reference_answer}$", parsing_timeout=None)
    predicted = parse(f"${answer}$", parsing_timeout=None)
    return float(bool(gold) and verify(gold, predicted, timeout_seconds=None))


def shows_steps(text: str) -> bool:
    return len(ENUMERATED_STEP.findall(text)) >= 2 or len(ORDINAL_WORD.findall(text)) >= 2


def boxed_answer_and_steps(response: str, reference_answer: str = "") -> float:
    """Clarity: 1 for a boxed answer laid out step by step."""
    return float(last_boxed(response) is not None and shows_steps(response))


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
    paper_setups = {
        "paper": PaperSetup(
            policy="Qwen/Qwen3-8B",
            dataset="HuggingFaceH4/MATH-500",
            dataset_format="problems",
            split="test",
            instruction=INSTRUCTION,
            scorers={
                "accuracy": RuleScorer(boxed_answer_accuracy),
                "conciseness": RunningMeanLengthScorer(),
                "clarity": RuleScorer(boxed_answer_and_steps),
            },
            # the paper's 300 training / 100 held-out problems, GRPO with 8 responses per prompt,
            # 64 prompts per step, learning rate 1e-6, KL 0.001, responses up to 2,048 tokens
            defaults=dict(
                steps=400,
                n_pairs=300,
                n_eval_prompts=100,
                prompts_per_step=64,
                group_size=8,
                micro_batch_size=2,  # 512 responses of up to 4,096 tokens (BENCHMARKS.md)
                learning_rate=1e-6,
                kl_coef=0.001,
                batch_size=16,
                # 64 sequences of up to 4,096 tokens per generate call: 36 GiB of key-value
                # cache next to 15 GiB of weights (README, precision and memory)
                generation_batch_size=64,
                max_length=4096,
                max_new_tokens=2048,
            ),
        ),
    }

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

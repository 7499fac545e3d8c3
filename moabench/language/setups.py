"""What a task author declares for each scale. The tiny scale: its special tokens (a task's
prompts start with BOS and end with SEP) and `TinyModelConfig`. The Hugging Face scales (small,
paper): one `PaperSetup` per scale, with its default policy and dataset, the dataset's format,
one scorer per objective (a reward model, the response length, or a rule) and the training
defaults at that scale.
`moabench.language.hub` loads and runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


#: The tiny scale's special tokens (its tokenizer's first ids); a task's prompts use BOS and SEP.
PAD, BOS, EOS, SEP = "<pad>", "<bos>", "<eos>", "<sep>"
SPECIAL_TOKENS = (PAD, BOS, EOS, SEP)


@dataclass(frozen=True)
class TinyModelConfig:
    """The tiny scale's GPT-2 and the supervised fine-tune of its reference policy."""

    n_embd: int = 48
    n_layer: int = 2
    n_head: int = 2
    n_positions: int = 32
    sft_steps: int = 300
    sft_batch_size: int = 64
    sft_learning_rate: float = 3e-3
    seed: int = 0


@dataclass(frozen=True)
class RewardModelScorer:
    """An objective scored by a sequence classifier's logit (or probability) of `label`."""

    model: str
    template: str = "{prompt}{response}"  # the text the reward model reads
    source_pair: bool = False  # read (response, prompt) as a text pair (faithfulness detectors)
    label: int = 0
    probability: bool = False
    sign: float = 1.0  # -1 for a cost model: harmlessness = -cost


@dataclass(frozen=True)
class LengthScorer:
    """Conciseness: minus the number of response tokens (policy tokenizer)."""


@dataclass(frozen=True)
class RunningMeanLengthScorer:
    """Conciseness as in dynamic reward weighting: 1 for a response with fewer tokens (policy
    tokenizer) than the running mean length of the training responses scored so far (its own
    batch included), else 0. At evaluation the bar is the first evaluation's mean length (the
    reference policy's), so that the final points of different runs are comparable."""


@dataclass(frozen=True)
class RuleScorer:
    """An objective scored by a rule, `score(response, reference_answer)` (the reference answer
    comes from a "problems" dataset; it is "" for pairs)."""

    score: Callable[[str, str], float]


Scorer = RewardModelScorer | LengthScorer | RunningMeanLengthScorer | RuleScorer


@dataclass(frozen=True)
class PaperSetup:
    policy: str
    dataset: str
    dataset_format: Literal["pku-saferlhf", "hh-rlhf", "signed", "problems"]
    scorers: Mapping[str, Scorer]  # objective -> scorer, in the task's objective order
    split: str = "train"
    subsets: Mapping[str, str] = field(default_factory=dict)  # hh-rlhf: objective -> data_dir
    sign_columns: Mapping[str, str] = field(default_factory=dict)  # signed: objective -> column
    prompt_template: str = "{prompt}"  # used when the policy's tokenizer has no chat template
    instruction: str = ""  # problems: appended to each problem
    defaults: Mapping[str, Any] = field(default_factory=dict)  # training parameters at this scale

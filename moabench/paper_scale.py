"""The papers' setups (scales `small` and `paper`): Hugging Face policies, preference datasets and
reward models, loaded through `moabench.hub` and trained by the same preference trainer as `tiny`.

A task declares one `PaperSetup` per scale: the default policy and dataset, the dataset's format
(preference pairs, `moabench.pairs`, or problems with reference answers for online training), and
one scorer per objective (a reward model, the response length, or a rule). Every
default can be replaced by a local path (`--task-param policy=DIR`, `dataset=DIR_OR_FILE`,
`reward_models={"helpfulness": DIR}`). Objectives the dataset does not label are labelled by
their scorer (sign of the score difference), as RACO derives its faithfulness pairs.

Normalisation: the reference policy's mean score is the nadir and two standard deviations of its
per-response scores beyond it (in the improving direction) the ideal, so a hypervolume measures
improvement over the reference. It is computed at the start of each run and recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from moabench import hub
from moabench.errors import ConfigError
from moabench.pairs import (
    PreferencePairs,
    concatenate,
    read_hh_rlhf,
    read_moabench,
    read_pku_saferlhf,
    read_signed,
    require_columns,
)
from moabench.task import ObjectiveSpace
from moabench.tiny_lm import diverged_sampling

if TYPE_CHECKING:
    from moabench.preference import LanguageParams

#: Reference policy's per-response standard deviations between the nadir and the ideal point.
IDEAL_SPREAD = 2.0


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
#: (prompts, responses, evaluation) -> one score per response
ScoreFunction = Callable[[list[str], list[str], bool], np.ndarray]


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


# --- data ---------------------------------------------------------------------------------------


def read_pairs(
    setup: PaperSetup, params: LanguageParams, objectives: Sequence[str]
) -> PreferencePairs:
    """Up to n_pairs + n_eval_prompts rows, shuffled with data_seed, as preference pairs; a data
    file (.json/.jsonl/...) is read in the `moabench` format, anything else in the setup's."""
    name = params.dataset or setup.dataset
    limit = params.n_pairs + params.n_eval_prompts
    is_file = any(name.endswith(suffix) for suffix in hub.DATA_FILE_FORMATS)
    if is_file:
        rows = _rows(
            hub.load_rows(name, "dataset", setup.split),
            limit,
            params.data_seed,
            name,
            ["prompt", "response_a", "response_b", "preferred"],
            "moabench",
        )
        return read_moabench(rows, objectives, name)
    if setup.dataset_format == "hh-rlhf":
        parts = []
        for objective, data_dir in setup.subsets.items():
            source = f"{name} ({data_dir})"
            rows = _rows(
                hub.load_rows(name, "dataset", setup.split, data_dir),
                limit // len(setup.subsets) + 1,
                params.data_seed,
                source,
                ["chosen", "rejected"],
                "hh-rlhf",
            )
            parts.append(
                read_hh_rlhf(rows, list(objectives).index(objective), len(objectives), source)
            )
        return _shuffled(concatenate(parts), params.data_seed)
    dataset = hub.load_rows(name, "dataset", setup.split)
    if setup.dataset_format == "pku-saferlhf":
        needed = ["prompt", "response_0", "response_1", "better_response_id", "safer_response_id"]
        return read_pku_saferlhf(
            _rows(dataset, limit, params.data_seed, name, needed, "pku-saferlhf"), objectives, name
        )
    labelled = [o for o in objectives if o in setup.sign_columns]
    needed = ["prompt", "chosen", "rejected", *(setup.sign_columns[o] for o in labelled)]
    rows = _rows(dataset, limit, params.data_seed, name, needed, "signed")
    pairs = read_signed(rows, labelled, name, setup.sign_columns)
    return _with_unlabelled_objectives(pairs, labelled, objectives)


@dataclass
class Problems:
    """Prompts (problem + the setup's instruction) and their reference answers."""

    prompts: list[str]
    answers: list[str]


def read_problems(setup: PaperSetup, params: LanguageParams) -> Problems:
    """Up to n_pairs + n_eval_prompts rows of a "problems" dataset (columns `problem` and
    `answer`, as HuggingFaceH4/MATH-500), shuffled with data_seed."""
    name = params.dataset or setup.dataset
    rows = _rows(
        hub.load_rows(name, "dataset", setup.split),
        params.n_pairs + params.n_eval_prompts,
        params.data_seed,
        name,
        ["problem", "answer"],
        "problems",
    )
    return Problems(
        [f"{row['problem']}{setup.instruction}" for row in rows],
        [str(row["answer"]) for row in rows],
    )


def hold_out_problems(problems: Problems, n_eval_prompts: int) -> tuple[list[str], list[str]]:
    """(training prompts, evaluation prompts): the first n_eval_prompts problems are held out."""
    evaluation, training = problems.prompts[:n_eval_prompts], problems.prompts[n_eval_prompts:]
    if not training:
        raise ConfigError(
            f"no problems left for training after holding out {n_eval_prompts} for evaluation "
            f"({len(problems.prompts)} read); lower n_eval_prompts"
        )
    return training, evaluation


def _rows(dataset, limit: int, seed: int, source: str, needed: list[str], fmt: str) -> list[dict]:
    require_columns(dataset.column_names, needed, source, fmt)
    dataset = dataset.shuffle(seed=seed)
    return dataset.select(range(min(limit, len(dataset)))).to_list()


def _shuffled(pairs: PreferencePairs, seed: int) -> PreferencePairs:
    order = np.random.default_rng(seed).permutation(len(pairs))
    return PreferencePairs(
        [pairs.prompts[i] for i in order],
        [pairs.responses_a[i] for i in order],
        [pairs.responses_b[i] for i in order],
        pairs.signs[:, torch.as_tensor(order)],
    )


def _with_unlabelled_objectives(
    pairs: PreferencePairs, labelled: Sequence[str], objectives: Sequence[str]
) -> PreferencePairs:
    """Signs for every objective; rows of objectives without labels are NaN until scored."""
    signs = torch.full((len(objectives), len(pairs)), float("nan"))
    for row, objective in enumerate(labelled):
        signs[list(objectives).index(objective)] = pairs.signs[row]
    return PreferencePairs(pairs.prompts, pairs.responses_a, pairs.responses_b, signs)


def hold_out(
    pairs: PreferencePairs, n_eval_prompts: int, n_pairs: int
) -> tuple[PreferencePairs, list[str]]:
    """(training pairs, evaluation prompts): the first n_eval_prompts distinct prompts are held
    out, and no training pair shares a prompt with them."""
    evaluation = list(dict.fromkeys(pairs.prompts))[:n_eval_prompts]
    held = set(evaluation)
    keep = [i for i, p in enumerate(pairs.prompts) if p not in held][:n_pairs]
    if not keep:
        raise ConfigError(
            f"no preference pairs left for training after holding out {len(evaluation)} evaluation prompts"
        )
    train = PreferencePairs(
        [pairs.prompts[i] for i in keep],
        [pairs.responses_a[i] for i in keep],
        [pairs.responses_b[i] for i in keep],
        pairs.signs[:, torch.as_tensor(keep)],
    )
    return train, evaluation


# --- models ---------------------------------------------------------------------------------------


def scorer_functions(
    setup: PaperSetup,
    params: LanguageParams,
    objectives: Sequence[str],
    policy_tokenizer,
    device: str,
    answers: Mapping[str, str] | None = None,
) -> list[ScoreFunction]:
    """One `ScoreFunction` per objective; `answers` maps a prompt to its reference answer."""
    unknown = sorted(set(params.reward_models) - set(objectives))
    if unknown:
        raise ConfigError(
            f"reward_models: unknown objective(s) {unknown} (objectives: {', '.join(objectives)})"
        )
    answers = answers or {}

    def token_counts(responses: list[str]) -> np.ndarray:
        return np.array(
            [len(policy_tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses],
            dtype=float,
        )

    functions: list[ScoreFunction] = []
    for objective in objectives:
        scorer = setup.scorers[objective]
        if not isinstance(scorer, RewardModelScorer):
            if objective in params.reward_models:
                raise ConfigError(
                    f"reward_models: {objective!r} is scored by a rule, not by a model"
                )
            if isinstance(scorer, LengthScorer):
                functions.append(lambda prompts, responses, evaluation: -token_counts(responses))
            elif isinstance(scorer, RunningMeanLengthScorer):
                functions.append(ShorterThanRunningMean(token_counts))
            else:
                functions.append(
                    lambda prompts, responses, evaluation, rule=scorer.score: np.array(
                        [rule(r, answers.get(p, "")) for p, r in zip(prompts, responses)],
                        dtype=float,
                    )
                )
            continue
        name = params.reward_models.get(objective, scorer.model)
        model, tokenizer = hub.load_sequence_classifier(name, f"reward_models.{objective}")
        functions.append(_classifier_scores(scorer, model.to(device), tokenizer, params, device))
    return functions


class ShorterThanRunningMean:
    """The `RunningMeanLengthScorer`'s state: the training responses' total length and count,
    and the evaluation bar."""

    def __init__(self, token_counts: Callable[[list[str]], np.ndarray]) -> None:
        self.token_counts = token_counts
        self.total, self.count = 0.0, 0
        self.evaluation_bar: float | None = None

    def __call__(self, prompts: list[str], responses: list[str], evaluation: bool) -> np.ndarray:
        lengths = self.token_counts(responses)
        if evaluation:
            if self.evaluation_bar is None:
                self.evaluation_bar = float(lengths.mean())
            bar = self.evaluation_bar
        else:
            self.total, self.count = self.total + lengths.sum(), self.count + len(lengths)
            bar = self.total / self.count
        return (lengths < bar).astype(float)


def _classifier_scores(
    scorer: RewardModelScorer, model, tokenizer, params: LanguageParams, device: str
) -> ScoreFunction:
    tokenizer.padding_side = "right"

    def score(prompts: list[str], responses: list[str], evaluation: bool) -> np.ndarray:
        values = []
        for start in range(0, len(prompts), params.batch_size):
            chunk = slice(start, start + params.batch_size)
            if scorer.source_pair:
                encoded = tokenizer(
                    responses[chunk],
                    prompts[chunk],
                    truncation=True,
                    padding=True,
                    max_length=params.max_length,
                    return_tensors="pt",
                )
            else:
                texts = [
                    scorer.template.format(prompt=p, response=r)
                    for p, r in zip(prompts[chunk], responses[chunk])
                ]
                encoded = tokenizer(
                    texts,
                    truncation=True,
                    padding=True,
                    max_length=params.max_length,
                    return_tensors="pt",
                )
            with torch.no_grad():
                logits = model(**encoded.to(device)).logits.float()
            outputs = logits.softmax(-1) if scorer.probability else logits
            values.append(scorer.sign * outputs[:, scorer.label].cpu().numpy())
        return np.concatenate(values).astype(np.float64)

    return score


def format_prompts(tokenizer, prompts: Sequence[str], template: str) -> list[str]:
    """The policy's chat template when its tokenizer has one, else `template`."""
    if getattr(tokenizer, "chat_template", None):
        return [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in prompts
        ]
    return [template.format(prompt=p) for p in prompts]


def generate_text(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int,
    seed: int,
    batch_size: int,
    device: str,
) -> list[str]:
    """One sampled response per prompt (temperature 1, full distribution) with a fixed seed."""
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    responses = []
    for start in range(0, len(prompts), batch_size):
        encoded = tokenizer(
            list(prompts[start : start + batch_size]),
            add_special_tokens=False,
            padding=True,
            return_tensors="pt",
        ).to(device)
        with torch.no_grad(), diverged_sampling():
            output = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                do_sample=True,
                top_k=0,
                top_p=1.0,
                temperature=1.0,
                pad_token_id=tokenizer.pad_token_id,
            )
        responses += tokenizer.batch_decode(
            output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True
        )
    return responses


def reference_space(names: Sequence[str], scores: np.ndarray) -> ObjectiveSpace:
    """Nadir = the reference policy's mean scores; ideal = IDEAL_SPREAD standard deviations of its
    per-response scores above (all paper-scale scores are maximised)."""
    mean, spread = scores.mean(axis=0), IDEAL_SPREAD * scores.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    return ObjectiveSpace(
        names=tuple(names),
        maximize=(True,) * len(names),
        ideal=tuple(float(v) for v in mean + spread),
        nadir=tuple(float(v) for v in mean),
    )


def last_block_parameters(model) -> list[torch.Tensor]:
    """Trainable parameters of the highest-numbered transformer block (GAPO's last layer)."""
    import re

    numbered = [
        (int(m.group(1)), p)
        for n, p in model.named_parameters()
        if p.requires_grad and (m := re.search(r"\.(?:h|layers|layer|blocks)\.(\d+)\.", n))
    ]
    if not numbered:
        raise ConfigError(
            "gram_parameters='last-block': no numbered transformer blocks among the trainable parameters"
        )
    last = max(i for i, _ in numbered)
    return [p for i, p in numbered if i == last]

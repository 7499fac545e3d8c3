"""The Hugging Face scales (`small` and `paper`): the policies, preference datasets and reward
models of a task's `PaperSetup` (`moabench.language.setups`), loaded through
`moabench.language.loading` and turned into the problems that the same trainers as `tiny` take.

A setup's dataset holds preference pairs (`moabench.language.pairs`) or problems with reference
answers for online training; each objective is scored by a reward model, the response length, or
a rule. Every default can be replaced by a local path (`--task-param policy=DIR`, `dataset=DIR_OR_FILE`,
`reward_models={"helpfulness": DIR}`). Objectives the dataset does not label are labelled by
their scorer (sign of the score difference), as RACO derives its faithfulness pairs.

Normalisation: the reference policy's mean score is the nadir and two standard deviations of its
per-response scores beyond it (in the improving direction) the ideal, so a hypervolume measures
improvement over the reference. It is computed at the start of each run and recorded.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from moabench.core.errors import ConfigError
from moabench.core.task import ObjectiveSpace
from moabench.language import loading
from moabench.language.lm import Batch, diverged_sampling, make_batch, token_log_probs
from moabench.language.online import OnlineProblem
from moabench.language.pairs import (
    PreferencePairs,
    concatenate,
    read_hh_rlhf,
    read_moabench,
    read_pku_saferlhf,
    read_signed,
    require_columns,
)
from moabench.language.params import LanguageParams
from moabench.language.preference import PreferenceProblem
from moabench.language.setups import (
    LengthScorer,
    PaperSetup,
    RewardModelScorer,
    RunningMeanLengthScorer,
)
from moabench.language.training import EVALUATION_SEED, checked_scores

#: Reference policy's per-response standard deviations between the nadir and the ideal point.
IDEAL_SPREAD = 2.0

#: (prompts, responses, evaluation) -> one score per response
ScoreFunction = Callable[[list[str], list[str], bool], np.ndarray]


# --- data ---------------------------------------------------------------------------------------


def read_pairs(
    setup: PaperSetup, params: LanguageParams, objectives: Sequence[str]
) -> PreferencePairs:
    """Up to n_pairs + n_eval_prompts rows, shuffled with data_seed, as preference pairs; a data
    file (.json/.jsonl/...) is read in the `moabench` format, anything else in the setup's."""
    name = params.dataset or setup.dataset
    limit = params.n_pairs + params.n_eval_prompts
    is_file = any(name.endswith(suffix) for suffix in loading.DATA_FILE_FORMATS)
    if is_file:
        rows = _rows(
            loading.load_rows(name, "dataset", setup.split),
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
                loading.load_rows(name, "dataset", setup.split, data_dir),
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
    dataset = loading.load_rows(name, "dataset", setup.split)
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
        loading.load_rows(name, "dataset", setup.split),
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
        model, tokenizer = loading.load_sequence_classifier(name, f"reward_models.{objective}")
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


# --- the problems the trainers take ---------------------------------------------------------------


@dataclass
class HubPieces:
    """What both trainers' problems take from a Hugging Face setup (`load_pieces`)."""

    policy: torch.nn.Module
    tokenizer: Any
    device: str
    data: PreferencePairs | None  # training pairs (None for a "problems" dataset)
    training_prompts: list[str]  # online training prompts: the pairs' or the problems'
    scores: Callable[[list[str], list[str], bool], np.ndarray]  # (prompts, responses, evaluation)
    formatted: Callable[[list[str]], list[str]]  # raw prompts -> what the policy reads
    sample: Callable[[torch.nn.Module, list[str], int], list[str]]  # (model, prompts, seed)
    evaluate: Callable[[torch.nn.Module], list[float]]
    capabilities: Callable[[torch.nn.Module], dict[str, float]]  # lm-eval on the trained policy


def load_pieces(
    setup: PaperSetup,
    params: LanguageParams,
    objectives: Sequence[str],
    on_reference_space: Callable[[ObjectiveSpace], None],
) -> HubPieces:
    """The setup's policy (with LoRA), training data, held-out prompts and scorers;
    `on_reference_space` receives the space measured from the first evaluation (the reference
    policy's)."""
    device = params.device or ("cuda" if torch.cuda.is_available() else "cpu")
    answers: dict[str, str] = {}
    if setup.dataset_format == "problems":
        problems = read_problems(setup, params)
        answers = dict(zip(problems.prompts, problems.answers))
        data = None
        training_prompts, eval_prompts = hold_out_problems(problems, params.n_eval_prompts)
    else:
        data, eval_prompts = hold_out(
            read_pairs(setup, params, objectives), params.n_eval_prompts, params.n_pairs
        )
        training_prompts = list(dict.fromkeys(data.prompts))
    base, tokenizer = loading.load_causal_lm(params.policy or setup.policy)
    policy = loading.with_lora(base, params.lora_rank).to(device)
    scorers = scorer_functions(setup, params, objectives, tokenizer, device, answers)
    measured = False

    def scores(prompts: list[str], responses: list[str], evaluation: bool) -> np.ndarray:
        return np.stack([score(prompts, responses, evaluation) for score in scorers], axis=1)

    def formatted(prompts: list[str]) -> list[str]:
        return format_prompts(tokenizer, prompts, setup.prompt_template)

    def sample(model, prompts: list[str], seed: int) -> list[str]:
        return generate_text(
            model, tokenizer, formatted(prompts), params.max_new_tokens, seed,
            params.batch_size, device,
        )  # fmt: skip

    def evaluate(model) -> list[float]:
        nonlocal measured
        model.eval()
        responses = sample(model, eval_prompts, EVALUATION_SEED)
        per_response = scores(eval_prompts, responses, evaluation=True)
        model.train()
        if not measured:  # the first evaluation is the reference policy's
            measured = True
            on_reference_space(reference_space(objectives, per_response))
        return per_response.mean(axis=0).tolist()

    def capabilities(model) -> dict[str, float]:
        if not params.lm_eval_tasks:
            return {}
        from moabench.language.capabilities import capability_scores

        return capability_scores(
            model, tokenizer, params.lm_eval_tasks, params.lm_eval_include_path,
            params.lm_eval_limit, params.batch_size,
        )  # fmt: skip

    return HubPieces(
        policy, tokenizer, device, data, training_prompts, scores, formatted, sample, evaluate,
        capabilities,
    )  # fmt: skip


def preference_problem(pieces: HubPieces, params: LanguageParams, task: str) -> PreferenceProblem:
    data, scores = pieces.data, pieces.scores
    if data is None:
        raise ConfigError(
            f"task {task!r}: its dataset holds problems, not preference pairs; "
            "train it online (--task-param paradigm=online)"
        )

    def differences() -> torch.Tensor:
        a = scores(data.prompts, data.responses_a, evaluation=False)
        delta = a - scores(data.prompts, data.responses_b, evaluation=False)
        return torch.as_tensor(delta.T, dtype=torch.float32)

    signs = data.signs
    if torch.isnan(signs).any():  # objectives the dataset does not label: by their scorer
        signs = torch.where(torch.isnan(signs), torch.sign(differences()), signs)
    return PreferenceProblem(
        policy=pieces.policy,
        pairs=make_batch(
            pieces.tokenizer,
            pieces.formatted(data.prompts) * 2,
            data.responses_a + data.responses_b,
            params.max_length,
        ),  # fmt: skip
        signs=signs,
        reward_differences=differences,
        evaluate=pieces.evaluate,
        device=pieces.device,
        capabilities=pieces.capabilities,
    )


def online_problem(
    pieces: HubPieces, params: LanguageParams, objectives: Sequence[str], task: str
) -> OnlineProblem:
    """Prompts of the setup's dataset, rewards from its scorers; with LoRA the reference is the
    policy with its adapters disabled (no second model)."""
    policy = pieces.policy
    training_prompts = pieces.training_prompts
    if hasattr(policy, "disable_adapter"):

        def reference_log_probs(batch: Batch) -> torch.Tensor:
            with policy.disable_adapter():
                return token_log_probs(policy, batch)
    else:
        reference = copy.deepcopy(policy).eval().requires_grad_(False)

        def reference_log_probs(batch: Batch) -> torch.Tensor:
            return token_log_probs(reference, batch)

    def prompts(rng: np.random.Generator, n: int) -> list[str]:
        return [training_prompts[i] for i in rng.integers(len(training_prompts), size=n)]

    def batch(prompts_: list[str], responses: list[str]) -> Batch:
        return make_batch(
            pieces.tokenizer, pieces.formatted(prompts_), responses, params.max_length
        ).to(pieces.device)

    return OnlineProblem(
        policy=policy,
        prompts=prompts,
        sample=lambda prompts_, seed: pieces.sample(policy, prompts_, seed),
        batch=batch,
        reference_log_probs=reference_log_probs,
        rewards=lambda prompts_, responses: checked_scores(
            pieces.scores(prompts_, responses, evaluation=False),
            objectives,
            f"task {task!r}: rewards()",
        ),
        evaluate=lambda: pieces.evaluate(policy),
        device=pieces.device,
        capabilities=pieces.capabilities,
    )

"""The Hugging Face scales (`small` and `paper`): the policies, preference datasets and reward
models of a task's `PaperSetup` (`moabench.language.setups`), loaded through
`moabench.language.loading` and turned into the problems that the same trainers as `tiny` take.

A setup's dataset holds preference pairs (`moabench.language.pairs`) or problems with reference
answers for online training; each objective is scored by a reward model, the response length, or
a rule. Every default can be replaced by a local path (`--task-param policy=DIR`, `dataset=DIR_OR_FILE`,
`reward_models={"helpfulness": DIR}`). Objectives the dataset does not label are labelled by
their scorer (sign of the score difference), as RACO derives its faithfulness pairs.

Rows are read in the order of a shuffle with `data_seed` until n_pairs + n_eval_prompts are
usable: a row with a known quirk (an empty answer, identical responses, ...; see
`moabench.language.pairs`) is skipped, warned about and counted in the run's record
(`skipped_rows`, per dataset split and quirk), or with `strict=true` an error. MATH-500 has no
known quirk; a "problems" row with an empty problem or answer is skipped the same way.

Normalisation: the reference policy's mean score is the nadir and two standard deviations of its
per-response scores beyond it (in the improving direction) the ideal, so a hypervolume measures
improvement over the reference. It is computed at the start of each run and recorded.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from moabench.core import distributed
from moabench.core.errors import ConfigError
from moabench.core.task import ObjectiveSpace
from moabench.language import loading
from moabench.language.conditioning import unconditioned
from moabench.language.lm import concatenate as concatenate_samples
from moabench.language.lm import (
    Batch,
    Samples,
    diverged_sampling,
    make_batch,
    sampled_batch,
    token_log_probs,
)
from moabench.language.online import OnlineProblem
from moabench.language.pairs import (
    PreferencePairs,
    SkippedRows,
    concatenate,
    moabench_columns,
    read_hh_rlhf,
    read_moabench,
    read_pku_saferlhf,
    read_rows,
    read_signed,
    require_columns,
    text,
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
) -> tuple[PreferencePairs, SkippedRows]:
    """(preference pairs, the rows skipped per source and quirk): n_pairs + n_eval_prompts pairs
    (fewer if the dataset has fewer) in the order of a shuffle with data_seed, rows with a known
    quirk skipped (`moabench.language.pairs`); a data file (.json/.jsonl/...) is read in the
    `moabench` format, anything else in the setup's."""
    name = params.dataset or setup.dataset
    limit, seed, strict = params.n_pairs + params.n_eval_prompts, params.data_seed, params.strict
    if _is_data_file(name):
        dataset = loading.load_rows(name, "dataset", setup.split)
        needed = moabench_columns(dataset.column_names, objectives, name)
        rows = _shuffled_rows(dataset, seed, name, needed, "moabench")
        pairs, skipped = read_moabench(rows, objectives, name, strict, limit)
        return pairs, _by_source(name, skipped)
    if setup.dataset_format == "hh-rlhf":
        parts, skipped_rows = [], {}
        for objective, data_dir in setup.subsets.items():
            source = _source(name, setup.split, data_dir)
            dataset = loading.load_rows(name, "dataset", setup.split, data_dir)
            rows = _shuffled_rows(dataset, seed, source, ["chosen", "rejected"], "hh-rlhf")
            part, skipped = read_hh_rlhf(
                rows, list(objectives).index(objective), len(objectives), source, strict,
                limit // len(setup.subsets) + 1,
            )  # fmt: skip
            parts.append(part)
            skipped_rows.update(_by_source(source, skipped))
        return _shuffled(concatenate(parts), seed), skipped_rows
    dataset = loading.load_rows(name, "dataset", setup.split)
    source = _source(name, setup.split)
    if setup.dataset_format == "pku-saferlhf":
        needed = ["prompt", "response_0", "response_1", "better_response_id", "safer_response_id"]
        rows = _shuffled_rows(dataset, seed, source, needed, "pku-saferlhf")
        pairs, skipped = read_pku_saferlhf(rows, objectives, source, strict, limit)
        return pairs, _by_source(source, skipped)
    labelled = [o for o in objectives if o in setup.sign_columns]
    needed = ["prompt", "chosen", "rejected", *(setup.sign_columns[o] for o in labelled)]
    rows = _shuffled_rows(dataset, seed, source, needed, "signed")
    pairs, skipped = read_signed(rows, labelled, source, setup.sign_columns, strict, limit)
    return _with_unlabelled_objectives(pairs, labelled, objectives), _by_source(source, skipped)


@dataclass
class Problems:
    """Prompts (problem + the setup's instruction) and their reference answers."""

    prompts: list[str]
    answers: list[str]


def read_problems(setup: PaperSetup, params: LanguageParams) -> tuple[Problems, SkippedRows]:
    """(problems, the rows skipped per source and quirk): n_pairs + n_eval_prompts rows of a
    "problems" dataset (columns `problem` and `answer`, as HuggingFaceH4/MATH-500) in the order
    of a shuffle with data_seed; a row with an empty problem or answer is a known quirk
    (`moabench.language.pairs.read_rows`)."""
    name = params.dataset or setup.dataset
    source = _source(name, setup.split)

    def parse(row: Mapping[str, Any]) -> tuple[str, str]:
        answer = row.get("answer")
        if isinstance(answer, int) and not isinstance(answer, bool):
            row = {**row, "answer": str(answer)}  # integer answers, as in GSM8K-style datasets
        return f"{text(row, 'problem')}{setup.instruction}", text(row, "answer")

    dataset = loading.load_rows(name, "dataset", setup.split)
    rows = _shuffled_rows(dataset, params.data_seed, source, ["problem", "answer"], "problems")
    limit = params.n_pairs + params.n_eval_prompts
    parsed, skipped = read_rows(rows, parse, source, params.strict, limit)
    return Problems([p for p, _ in parsed], [a for _, a in parsed]), _by_source(source, skipped)


def hold_out_problems(problems: Problems, n_eval_prompts: int) -> tuple[list[str], list[str]]:
    """(training prompts, evaluation prompts): the first n_eval_prompts problems are held out."""
    evaluation, training = problems.prompts[:n_eval_prompts], problems.prompts[n_eval_prompts:]
    if not training:
        raise ConfigError(
            f"no problems left for training after holding out {n_eval_prompts} for evaluation "
            f"({len(problems.prompts)} read); lower n_eval_prompts"
        )
    return training, evaluation


def _shuffled_rows(
    dataset, seed: int, source: str, needed: list[str], fmt: str
) -> Iterator[tuple[int, dict]]:
    """(row number from 1, row) in the order of `dataset.shuffle(seed=seed)`, read one at a time
    (a reader stops once it has enough rows)."""
    require_columns(dataset.column_names, needed, source, fmt)
    dataset = dataset.select_columns(needed)
    order = np.random.default_rng(seed).permutation(len(dataset)).tolist()  # as Dataset.shuffle
    return ((i + 1, dataset[i]) for i in order)


def _is_data_file(name: str) -> bool:
    return any(name.endswith(suffix) for suffix in loading.DATA_FILE_FORMATS)


def _source(name: str, split: str, data_dir: str | None = None) -> str:
    """How messages and records name a dataset split: a data file by its path, anything else as
    "name (data_dir, split)"."""
    return name if _is_data_file(name) else f"{name} ({', '.join(filter(None, [data_dir, split]))})"


def _by_source(source: str, skipped: dict[str, int]) -> SkippedRows:
    return {source: skipped} if skipped else {}


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

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class Placement:
    """Where a model's weights live: a torch device and a dtype."""

    device: str
    dtype: torch.dtype


def placement(device: str | None, dtype: str | None, prefix: str = "") -> Placement:
    """`device` (None: cuda if available, else cpu) and `dtype` (None: bfloat16 on CUDA, float32
    elsewhere), or a `ConfigError` for a device this machine lacks or a dtype it cannot train or
    score in; `prefix` names the parameters ("reward_" for the reward models)."""
    name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        kind, index = torch.device(name).type, torch.device(name).index
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"{prefix}device={name!r} is not a torch device (cpu, cuda, cuda:1, ...)"
        ) from None
    if index is not None and distributed.processes() > 1:
        raise ConfigError(
            f"{prefix}device={name!r} on {distributed.processes()} processes would put every "
            f"process's models on one device: each process has the GPU of its local rank; give "
            f"{prefix}device={kind!r} without an index"
        )
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{prefix}device={name!r}: this machine has no CUDA device for torch")
    if dtype == "float16" and kind == "cpu":
        raise ConfigError(
            f"{prefix}dtype='float16' on a CPU: half precision is for CUDA devices; use "
            "bfloat16 or float32 on a CPU"
        )
    if dtype == "bfloat16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"{prefix}dtype='bfloat16': {name} has no bfloat16 support; use float16 or float32"
        )
    chosen = dtype or ("bfloat16" if kind == "cuda" else "float32")
    return Placement(name, DTYPES[chosen])


def load_policy(name: str, params: LanguageParams, at: Placement) -> tuple[Any, Any]:
    """The policy (weights in `at.dtype`, LoRA adapters in float32, activation checkpointing if
    asked) on `at.device`, and its tokenizer."""
    base, tokenizer = loading.load_causal_lm(name, dtype=at.dtype)
    if params.gradient_checkpointing:
        if not base.supports_gradient_checkpointing:
            raise ConfigError(
                f"gradient_checkpointing: policy {name!r} ({type(base).__name__}) does not "
                "support activation checkpointing in transformers"
            )
        checkpoint_activations(base)
        checkpoint_in_eval_mode(base)
    policy = loading.with_lora(base, params.lora_rank).to(at.device)
    # the processes start from process 0's adapters (LoRA initialises them at random)
    distributed.broadcast_from_first([p for p in policy.parameters() if p.requires_grad])
    return policy, tokenizer


def checkpoint_activations(model) -> None:
    """transformers' non-reentrant activation checkpointing (the per-objective gradients come from
    `torch.autograd.grad`), under its name since transformers 5 where the model has it."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def checkpoint_in_eval_mode(model: torch.nn.Module) -> None:
    """transformers checkpoints a layer only in training mode, and the online trainer runs the
    policy in eval mode (no dropout): before each forward pass of the model's base (the
    decoder), each checkpointed layer itself is put in training mode where gradients are being
    taken, and follows the model's mode elsewhere, while its submodules (dropout included) follow
    `model.train()` / `model.eval()`. Before transformers 5.24 a checkpointed layer in training
    mode drops the key-value cache even without gradients, so a layer left in training mode
    would make every decoding step after the first see only its own token."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [
        module
        for module in model.modules()
        if isinstance(module, GradientCheckpointingLayer) and module.gradient_checkpointing
    ]

    def checkpoint_where_training(base: torch.nn.Module, args) -> None:
        for layer in layers:
            layer.training = base.training or torch.is_grad_enabled()

    model.base_model.register_forward_pre_hook(checkpoint_where_training)


def scorer_functions(
    setup: PaperSetup,
    params: LanguageParams,
    objectives: Sequence[str],
    policy_tokenizer,
    at: Placement,
    answers: Mapping[str, str] | None = None,
    offloaded: bool = False,
) -> list[ScoreFunction]:
    """One `ScoreFunction` per objective; `answers` maps a prompt to its reference answer. The
    reward models are loaded on `at.device`, or, `offloaded`, kept in CPU memory and moved to
    `at.device` only while they score."""
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
        model, tokenizer = loading.load_sequence_classifier(
            name, f"reward_models.{objective}", at.dtype
        )
        model = model if offloaded else model.to(at.device)
        functions.append(_classifier_scores(scorer, model, tokenizer, params, at.device))
    return functions


@contextmanager
def on_device(model: torch.nn.Module, device: str) -> Iterator[None]:
    """`model` on `device` for the duration, back on the device it was on afterwards (nothing
    moves when it is there already)."""
    home = next(model.parameters()).device
    model.to(device)
    try:
        yield
    finally:
        model.to(home)


class ShorterThanRunningMean:
    """The `RunningMeanLengthScorer`'s state: the training responses' total length and count
    (of the global batch, on several processes), and the evaluation bar."""

    def __init__(self, token_counts: Callable[[list[str]], np.ndarray]) -> None:
        self.token_counts = token_counts
        self.total, self.count = 0.0, 0
        self.evaluation_bar: float | None = None

    def __call__(self, prompts: list[str], responses: list[str], evaluation: bool) -> np.ndarray:
        lengths = self.token_counts(responses)
        if evaluation:  # every process scores the same evaluation responses
            if self.evaluation_bar is None:
                self.evaluation_bar = float(lengths.mean())
            bar = self.evaluation_bar
        else:  # the global batch's lengths: every process's share, summed over the processes
            total, count = distributed.summed(
                torch.tensor([lengths.sum(), len(lengths)], dtype=torch.float64)
            ).tolist()
            self.total, self.count = self.total + total, self.count + count
            bar = self.total / self.count
        return (lengths < bar).astype(float)


def _classifier_scores(
    scorer: RewardModelScorer, model, tokenizer, params: LanguageParams, device: str
) -> ScoreFunction:
    tokenizer.padding_side = "right"

    def score(prompts: list[str], responses: list[str], evaluation: bool) -> np.ndarray:
        values = []
        with on_device(model, device):  # the whole call: one move in, one out
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
    max_length: int,
    temperature: float = 1.0,
) -> Samples:
    """One sampled response per prompt (the full distribution at `temperature`, 0: greedy) with
    a fixed seed, its text and its sampled token ids (`moabench.language.lm.sampled_batch`: a
    response cut at max_new_tokens has no <eos>); a prompt longer than max_length -
    max_new_tokens tokens loses its beginning, as in training (`lm.make_batch`)."""
    torch.manual_seed(seed)
    sampling = {"do_sample": True, "top_k": 0, "top_p": 1.0, "temperature": temperature}
    parts = []
    for encoded in encoded_batches(
        tokenizer, prompts, batch_size, max_length - max_new_tokens, device
    ):
        with torch.no_grad(), diverged_sampling():
            output = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                **(sampling if temperature else {"do_sample": False}),
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        batch = sampled_batch(
            encoded["input_ids"], encoded["attention_mask"], new_tokens,
            eos_token_ids(model, tokenizer), tokenizer.pad_token_id,
        )  # fmt: skip
        parts.append(Samples(tokenizer.batch_decode(new_tokens, skip_special_tokens=True), batch))
    return concatenate_samples(parts, tokenizer.pad_token_id)


def encoded_batches(
    tokenizer, prompts: Sequence[str], batch_size: int, max_length: int, device: str
) -> Iterator[Any]:
    """The prompts tokenised in batches of `batch_size`, padded and truncated on the left to at
    most `max_length` tokens, on `device`: what generation reads."""
    tokenizer.padding_side = tokenizer.truncation_side = "left"
    for start in range(0, len(prompts), batch_size):
        yield tokenizer(
            list(prompts[start : start + batch_size]), add_special_tokens=False, padding=True,
            truncation=True, max_length=max_length, return_tensors="pt",
        ).to(device)  # fmt: skip


def eos_token_ids(model, tokenizer) -> list[int]:
    """The tokens that end generation: the model's generation config's (`generate`'s), else
    the tokenizer's <eos>."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    return [i for i in ids if i is not None] or [
        i for i in [tokenizer.eos_token_id] if i is not None
    ]


@contextmanager
def merged_adapters(model: torch.nn.Module) -> Iterator[None]:
    """With LoRA adapters (peft), B A merged into the base weights for the duration, so that
    generation takes one matrix product per adapted layer (unmerged, peft adds the adapters'
    two, with float32 casts, at every decoding step); afterwards the adapters are unmerged and
    the base weights restored bit for bit (unmerging alone would leave bfloat16 rounding in
    them, and so in the reference policy). Without adapters: nothing."""
    if not hasattr(model, "merge_adapter"):
        yield
        return
    from peft.tuners.lora import LoraLayer

    bases = [m.get_base_layer() for m in model.modules() if isinstance(m, LoraLayer)]
    saved = [base.weight.detach().clone() for base in bases]
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()
        with torch.no_grad():
            for base, weight in zip(bases, saved):
                base.weight.copy_(weight)


#: The share of the GPU's memory that vLLM takes (its copy of the base weights and its key-value
#: cache) next to the policy that trains on the same GPU.
VLLM_MEMORY_FRACTION = 0.3


def vllm_sampler(
    policy, tokenizer, params: LanguageParams, formatted: Callable[[list[str]], list[str]]
) -> Callable[[list[str], int], Samples]:
    """(prompts, seed) -> `Samples`, sampled by vLLM (as trl's `use_vllm` in colocate mode): the
    base model loaded once into vLLM on the current GPU, the policy's LoRA adapters saved and
    handed over at every call (a new `LoRARequest`), one seed per response (seed + its index),
    the full distribution at `params.temperature`, and the sampled token ids kept as
    `generate_text` keeps them. Not run by the tests (vLLM needs a CUDA GPU)."""
    import tempfile

    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    llm = LLM(
        model=policy.config.name_or_path, dtype=str(policy.dtype).removeprefix("torch."),
        enable_lora=True, max_lora_rank=params.lora_rank, max_loras=1,
        max_model_len=params.max_length, gpu_memory_utilization=VLLM_MEMORY_FRACTION,
    )  # fmt: skip
    adapters = tempfile.mkdtemp(prefix="moabench-vllm-")
    calls = 0

    def sample(prompts: list[str], seed: int) -> Samples:
        nonlocal calls
        calls += 1
        path = os.path.join(adapters, str(calls))
        policy.save_pretrained(path)
        tokenizer.padding_side = tokenizer.truncation_side = "left"
        encoded = tokenizer(
            formatted(prompts), add_special_tokens=False, padding=True, truncation=True,
            max_length=params.max_length - params.max_new_tokens, return_tensors="pt",
        )  # fmt: skip
        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        outputs = llm.generate(
            [{"prompt_token_ids": row[keep.bool()].tolist()} for row, keep in zip(ids, mask)],
            [
                SamplingParams(
                    temperature=params.temperature, top_p=1.0, max_tokens=params.max_new_tokens,
                    seed=seed + i,
                )  # fmt: skip
                for i in range(len(prompts))
            ],
            lora_request=LoRARequest(f"policy-{calls}", calls, path),
            use_tqdm=False,
        )
        sampled = [list(output.outputs[0].token_ids) for output in outputs]
        width = max(len(tokens) for tokens in sampled)
        new_tokens = torch.tensor(
            [tokens + [tokenizer.pad_token_id] * (width - len(tokens)) for tokens in sampled]
        )
        batch = sampled_batch(
            ids, mask, new_tokens, eos_token_ids(policy, tokenizer), tokenizer.pad_token_id
        )
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return Samples(texts, batch.to(policy.device))

    return sample


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
    eval_prompts: list[str]  # the held-out prompts that `evaluate` samples on
    scores: Callable[[list[str], list[str], bool], np.ndarray]  # (prompts, responses, evaluation)
    formatted: Callable[[list[str]], list[str]]  # raw prompts -> what the policy reads
    #: (model, prompts, seed, temperature=1) -> the responses' text and sampled token ids
    sample: Callable[..., Samples]
    evaluate: Callable[[torch.nn.Module], list[float]]
    capabilities: Callable[[torch.nn.Module], dict[str, float]]  # lm-eval on the trained policy
    skipped_rows: SkippedRows  # dataset rows skipped for a known quirk, for the run's record


def load_pieces(
    setup: PaperSetup,
    params: LanguageParams,
    objectives: Sequence[str],
    on_reference_space: Callable[[ObjectiveSpace], None],
) -> HubPieces:
    """The setup's policy (with LoRA), training data, held-out prompts and scorers;
    `on_reference_space` receives the space measured from the first evaluation (the reference
    policy's)."""
    policy_at = placement(params.device, params.dtype)
    rewards_at = placement(params.reward_device or policy_at.device, params.reward_dtype, "reward_")
    device = policy_at.device
    answers: dict[str, str] = {}
    if setup.dataset_format == "problems":
        problems, skipped_rows = read_problems(setup, params)
        answers = dict(zip(problems.prompts, problems.answers))
        data = None
        training_prompts, eval_prompts = hold_out_problems(problems, params.n_eval_prompts)
    else:
        pairs, skipped_rows = read_pairs(setup, params, objectives)
        data, eval_prompts = hold_out(pairs, params.n_eval_prompts, params.n_pairs)
        training_prompts = list(dict.fromkeys(data.prompts))
    policy, tokenizer = load_policy(params.policy or setup.policy, params, policy_at)
    # reward models that share the policy's GPU wait in CPU memory while the policy trains
    offloaded = params.reward_device is None and torch.device(device).type == "cuda"
    scorers = scorer_functions(
        setup, params, objectives, tokenizer, rewards_at, answers, offloaded
    )
    measured = False

    def scores(prompts: list[str], responses: list[str], evaluation: bool) -> np.ndarray:
        return np.stack([score(prompts, responses, evaluation) for score in scorers], axis=1)

    def formatted(prompts: list[str]) -> list[str]:
        return format_prompts(tokenizer, prompts, setup.prompt_template)

    def sample(model, prompts: list[str], seed: int, temperature: float = 1.0) -> Samples:
        with merged_adapters(model):
            return generate_text(
                model, tokenizer, formatted(prompts), params.max_new_tokens, seed,
                params.generation_batch_size or params.batch_size, device, params.max_length,
                temperature,
            )  # fmt: skip

    def evaluate(model) -> list[float]:
        nonlocal measured
        model.eval()
        responses = sample(model, eval_prompts, EVALUATION_SEED).responses
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
        policy, tokenizer, device, data, training_prompts, eval_prompts, scores, formatted, sample,
        evaluate, capabilities, skipped_rows,
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
    policy with its adapters (and its conditioning, if any) disabled (no second model)."""
    policy = pieces.policy
    training_prompts = pieces.training_prompts
    if hasattr(policy, "disable_adapter"):

        def reference_log_probs(batch: Batch) -> torch.Tensor:
            with policy.disable_adapter(), unconditioned(policy):
                return token_log_probs(policy, batch)
    else:
        reference = copy.deepcopy(policy).eval().requires_grad_(False)

        def reference_log_probs(batch: Batch) -> torch.Tensor:
            return token_log_probs(reference, batch)

    def prompts(rng: np.random.Generator, n: int) -> list[str]:
        return [training_prompts[i] for i in rng.integers(len(training_prompts), size=n)]

    def sample(prompts_: list[str], seed: int) -> Samples:
        return pieces.sample(policy, prompts_, seed, params.temperature)

    if params.generation_engine == "vllm":
        sample = vllm_sampler(policy, pieces.tokenizer, params, pieces.formatted)
    return OnlineProblem(
        policy=policy,
        prompts=prompts,
        sample=sample,
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

"""The `tiny` scale: a word-level tokenizer built from a task's vocabulary, a small GPT-2 built
from a transformers config, a reference policy from a short supervised fine-tune (cached on disk
by config hash and loaded back through the normal `from_pretrained` path), and the problems that
the trainers take, built from the task's hooks (`TinyTask`).

The trainers never see the hidden rules: preference training learns from pairs sampled from the
reference policy and labelled per objective with Bradley-Terry noise; online training scores its
samples with the rules as its reward. Evaluation samples on held-out prompts with a fixed seed and
scores each objective with its rule.

transformers and tokenizers are imported inside the functions, so registering the language tasks
(and `moabench list`) does not pay their import time.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from moabench.core.determinism import cpu_numerics, one_torch_thread
from moabench.core.distributed import main_process_first
from moabench.core.progress import announce
from moabench.core.task import ObjectiveSpace
from moabench.language.lm import (
    Batch,
    Samples,
    diverged_sampling,
    make_batch,
    sample_tokens,
    sampled_batch,
    sequence_log_probs,
    token_log_probs,
)
from moabench.language.online import OnlineProblem
from moabench.language.pairs import PreferencePairs
from moabench.language.preference import PreferenceProblem, pair_reference_log_probs
from moabench.language.setups import BOS, EOS, PAD, SEP, SPECIAL_TOKENS, TinyModelConfig
from moabench.language.training import EVALUATION_SEED, checked_scores

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

def cache_dir() -> Path:
    """Where reference policies are cached: $MOABENCH_CACHE, else ~/.cache/moabench."""
    return Path(os.environ.get("MOABENCH_CACHE", Path.home() / ".cache" / "moabench"))


def _quiet_transformers() -> None:
    """No progress bars or advisory warnings from transformers inside runs and sweeps."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def build_tokenizer(vocabulary: Sequence[str]) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer whose ids are the special tokens, then `vocabulary`."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    _quiet_transformers()
    words = list(SPECIAL_TOKENS) + [w for w in vocabulary if w not in SPECIAL_TOKENS]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=PAD))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, bos_token=BOS, eos_token=EOS, sep_token=SEP
    )


def build_model(tokenizer: PreTrainedTokenizerFast, config: TinyModelConfig) -> PreTrainedModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(config.seed)
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=config.n_positions,
            n_embd=config.n_embd,
            n_layer=config.n_layer,
            n_head=config.n_head,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def generate_responses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    prompts: Sequence[str],
    max_new_tokens: int,
    seed: int,
    temperature: float = 1.0,
) -> list[str]:
    """Sample one response per prompt with a fixed seed; text up to <eos>."""
    return sample_responses(model, tokenizer, prompts, max_new_tokens, seed, temperature).responses


def sample_responses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    prompts: Sequence[str],
    max_new_tokens: int,
    seed: int,
    temperature: float = 1.0,
) -> Samples:
    """One response per prompt sampled with a fixed seed (`sample_tokens`): its text up to
    <eos> and the sampled token ids (`sampled_batch`)."""
    torch.manual_seed(seed)
    tokenizer.padding_side = "left"
    encoded = tokenizer(list(prompts), add_special_tokens=False, padding=True, return_tensors="pt")
    with torch.no_grad(), diverged_sampling():
        new_tokens = sample_tokens(
            model, encoded["input_ids"], encoded["attention_mask"], max_new_tokens,
            tokenizer.eos_token_id, tokenizer.pad_token_id, temperature,
        )  # fmt: skip
    batch = sampled_batch(
        encoded["input_ids"], encoded["attention_mask"], new_tokens, [tokenizer.eos_token_id],
        tokenizer.pad_token_id,
    )  # fmt: skip
    return Samples(responses_from_ids(tokenizer, new_tokens), batch)


def responses_from_ids(tokenizer: PreTrainedTokenizerFast, new_tokens: torch.Tensor) -> list[str]:
    """The text of each row of sampled token ids, up to its first <eos>."""
    responses = []
    for row in new_tokens.tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        words = tokenizer.convert_ids_to_tokens(row)
        responses.append(" ".join(w for w in words if w not in SPECIAL_TOKENS))
    return responses


def reference_policy(
    name: str,
    tokenizer: PreTrainedTokenizerFast,
    config: TinyModelConfig,
    demonstrations: Callable[[np.random.Generator, int], tuple[list[str], list[str]]],
) -> PreTrainedModel:
    """The supervised fine-tune of a fresh tiny model on `demonstrations(generator, n)` (prompts,
    responses), cached under `cache_dir()/references/<name>-<hash of vocabulary, config and CPU
    code paths>` (`cpu_numerics`: weights trained on other paths are not reused) with the
    checksums of its files: a cache that does not match them (a truncated or damaged file, an
    interrupted copy) is discarded and trained again."""
    key = hashlib.sha256(
        json.dumps(
            [name, tokenizer.get_vocab(), asdict(config), cpu_numerics()], sort_keys=True
        ).encode()
    ).hexdigest()[:16]
    path = cache_dir() / "references" / f"{name}-{key}"
    with main_process_first():  # data parallelism: process 0 trains and saves, the others load
        if not _intact(path):
            _discard(path)
            announce(
                f"building the {name} task's tiny reference policy ({config.sft_steps} supervised "
                f"steps, once; cached in {path})"
            )
            with one_torch_thread():  # the same weights whoever trains it first (test, run, worker)
                _train_reference(path, tokenizer, config, demonstrations)
    return copy.deepcopy(loaded_reference(path))


#: references loaded in this process (a sweep worker runs many runs), by folder and checksums
_REFERENCES: dict[tuple[Path, str], PreTrainedModel] = {}
REFERENCES_KEPT = 8


def loaded_reference(path: Path) -> PreTrainedModel:
    """The intact reference saved at `path`, loaded once per process and version of its files
    (the caller copies it: loading takes no random draw, so a copy is what a load would give)."""
    key = (path, (path / CHECKSUMS).read_text())
    if key not in _REFERENCES:
        # a copy in memory: the loaded tensors map the files, which a damaged cache's rebuild
        # replaces (with the same checksums, as training is deterministic): reading the mapped
        # pages of a removed or truncated file would kill the process (SIGBUS)
        remember(_REFERENCES, key, copy.deepcopy(load_model(path)), REFERENCES_KEPT)
    return _REFERENCES[key]


def remember(cache: dict, key: Any, value: Any, kept: int) -> None:
    """`cache[key] = value`, first dropping the oldest entries so that at most `kept` remain."""
    while len(cache) >= kept:
        del cache[next(iter(cache))]
    cache[key] = value


#: The file of a cached reference that holds the sha256 of its other files.
CHECKSUMS = "moabench-sha256.json"


def _checksums(folder: Path) -> dict[str, str]:
    """The sha256 of every file of a saved model, by name (`CHECKSUMS` aside)."""
    return {
        file.name: hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(folder.iterdir())
        if file.is_file() and file.name != CHECKSUMS
    }


def _intact(path: Path) -> bool:
    """Whether the cached model at `path` is there, with the files it was saved with."""
    try:
        return json.loads((path / CHECKSUMS).read_text()) == _checksums(path)
    except (OSError, ValueError):
        return False


def _discard(path: Path) -> None:
    """Remove a damaged cache, moving it aside first (a concurrent worker sees all or none)."""
    if not path.exists():
        return
    trash = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.damaged."))
    try:
        os.replace(path, trash / path.name)
    except OSError:  # another worker moved it first
        pass
    shutil.rmtree(trash, ignore_errors=True)


def load_model(path: Path) -> PreTrainedModel:
    """A tiny policy saved with `save_pretrained`, in evaluation mode."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    return model


def _train_reference(path: Path, tokenizer, config: TinyModelConfig, demonstrations) -> None:
    model = build_model(tokenizer, config)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.sft_learning_rate)
    model.train()
    for _ in range(config.sft_steps):
        # one numpy generator per batch, seeded from the run's torch generator
        rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
        prompts, responses = demonstrations(rng, config.sft_batch_size)
        loss = -sequence_log_probs(model, make_batch(tokenizer, prompts, responses)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    model.save_pretrained(scratch)
    (scratch / CHECKSUMS).write_text(json.dumps(_checksums(scratch), indent=1, sort_keys=True))
    try:
        os.replace(scratch, path)  # atomic: concurrent workers never see a half-written model
    except OSError:  # another worker finished first
        shutil.rmtree(scratch, ignore_errors=True)


# --- the problems the trainers take, from a task's hooks ------------------------------------------


class TinyTask(Protocol):
    """What the tiny scale reads of a language task (see `moabench.language.task.LanguageTask`)."""

    name: str
    params: Any
    model_config: TinyModelConfig
    max_response_tokens: int
    tiny_space: ObjectiveSpace

    def vocabulary(self) -> list[str]: ...

    def sample_prompts(self, generator: np.random.Generator, n: int) -> list[str]: ...

    def demonstrations(self, rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]: ...

    def rewards(self, prompts: list[str], responses: list[str]) -> np.ndarray: ...


def task_tokenizer(task: TinyTask) -> PreTrainedTokenizerFast:
    return build_tokenizer(task.vocabulary())


def task_reference(task: TinyTask, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    return reference_policy(task.name, tokenizer, task.model_config, task.demonstrations)


def bradley_terry_signs(
    rewards_a: np.ndarray, rewards_b: np.ndarray, noise: float, generator: np.random.Generator
) -> np.ndarray:
    """Per-objective labels (m, n): +1 (a preferred) with probability sigmoid((r_a - r_b)/noise),
    else -1; exact ties are 0."""
    difference = (rewards_a - rewards_b).T
    prefer_a = generator.random(difference.shape) < 1 / (1 + np.exp(-difference / noise))
    return np.where(difference == 0, 0.0, np.where(prefer_a, 1.0, -1.0))


def margin_rewards(rewards_a: np.ndarray, rewards_b: np.ndarray, noise: float) -> np.ndarray:
    """The margin rewards of the pairs (m, n) on the labels' Bradley-Terry scale,
    (r_a - r_b) / noise: the log-odds of `bradley_terry_signs`' labels, so what a stage-1
    reward model fitted to those labels learns (MODPO's r_{-k})."""
    return (rewards_a - rewards_b).T / noise


def preference_data(
    task: TinyTask, reference: PreTrainedModel, tokenizer: PreTrainedTokenizerFast
) -> tuple[PreferencePairs, torch.Tensor]:
    """Pairs sampled from the reference policy, labelled per objective with BT noise, and their
    margin rewards (`margin_rewards`), shape (m, n)."""
    params = task.params
    generator = np.random.default_rng(params.data_seed)
    prompts = task.sample_prompts(generator, params.n_pairs)
    seed = params.data_seed
    responses_a = generate_responses(reference, tokenizer, prompts, task.max_response_tokens, seed)
    responses_b = generate_responses(
        reference, tokenizer, prompts, task.max_response_tokens, seed + 1
    )
    rewards_a = task.rewards(prompts, responses_a)
    rewards_b = task.rewards(prompts, responses_b)
    signs = bradley_terry_signs(rewards_a, rewards_b, params.label_noise, generator)
    pairs = PreferencePairs(
        prompts, responses_a, responses_b, torch.as_tensor(signs, dtype=torch.float32)
    )
    margins = margin_rewards(rewards_a, rewards_b, params.label_noise)
    return pairs, torch.as_tensor(margins, dtype=torch.float32)


def evaluation_prompts(task: TinyTask) -> list[str]:
    return task.sample_prompts(np.random.default_rng(EVALUATION_SEED), task.params.n_eval_prompts)


def evaluate_policy(
    task: TinyTask, policy: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, prompts: list[str]
) -> list[float]:
    """Mean hidden score per objective of responses sampled with a fixed seed."""

    def evaluate() -> list[float]:
        responses = generate_responses(
            policy, tokenizer, prompts, task.max_response_tokens, EVALUATION_SEED
        )
        return task.rewards(prompts, responses).mean(axis=0).tolist()

    policy.eval()
    objectives = remembered_evaluation(task, policy, prompts, evaluate)
    policy.train()
    return objectives


#: evaluations this process made, by policy weights, task and prompts: (objectives, torch's
#: global random state after them)
_EVALUATIONS: dict[tuple[str, str], tuple[list[float], torch.Tensor]] = {}
EVALUATIONS_KEPT = 64


def remembered_evaluation(
    task: TinyTask, policy: PreTrainedModel, prompts: list[str], evaluate: Callable[[], list[float]]
) -> list[float]:
    """`evaluate()` (the scores of `policy` on `prompts`), or what it gave for the same weights,
    task and prompts before in this process, with torch's global random state as it left it: its
    draws start from `EVALUATION_SEED` (and the task's rewards are a function of the prompts and
    responses), so both are the same again. The first evaluation of every run of a task and data
    seed is its reference's, the same for a whole front. A policy with a `conditioning` (read
    through a hook, outside its weights) is always evaluated."""
    if getattr(policy, "conditioning", None) is not None:
        return evaluate()
    key = (data_key(task, policy), hashlib.sha256(json.dumps(prompts).encode()).hexdigest())
    if key not in _EVALUATIONS:
        objectives = evaluate()
        remember(_EVALUATIONS, key, (list(objectives), torch.get_rng_state()), EVALUATIONS_KEPT)
    objectives, state = _EVALUATIONS[key]
    torch.set_rng_state(state)
    return list(objectives)


def checked_rewards(task: TinyTask, prompts: list[str], responses: list[str]) -> np.ndarray:
    """`task.rewards(...)` as float64 (n, m), or a `ConfigError` naming what is wrong with it."""
    return checked_scores(
        task.rewards(prompts, responses),
        task.tiny_space.names,
        f"task {task.name!r}: rewards()",
        len(responses),
    )


#: parameters that do not change a preference run's pairs, labels, margins or reference
#: log-probabilities (any other parameter is part of `data_key`)
TRAINING_ONLY = frozenset(
    {"steps", "batch_size", "learning_rate", "optimizer", "gram_parameters", "beta"}
    | {"n_eval_prompts"}
)
#: what preference runs with the same `data_key` share, per process (a sweep worker runs many
#: runs): (pairs, labels, margins, reference log-probabilities), the last few keys
_PREFERENCE_DATA: dict[str, tuple[Batch, torch.Tensor, torch.Tensor, torch.Tensor]] = {}
PREFERENCE_DATA_KEPT = 8


def data_key(task: TinyTask, reference: PreTrainedModel) -> str:
    """A hash of everything a preference run's data depends on: the task's class, name and
    parameters other than `TRAINING_ONLY`, its vocabulary, response length and model config,
    and the reference policy's weights."""
    params = task.params.model_dump(mode="json", exclude=set(TRAINING_ONLY))
    described = [
        f"{type(task).__module__}.{type(task).__qualname__}", task.name, params,
        task.vocabulary(), task.max_response_tokens, asdict(task.model_config),
    ]  # fmt: skip
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode())
    for name, tensor in reference.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def shared_preference_data(
    task: TinyTask, reference: PreTrainedModel, tokenizer: PreTrainedTokenizerFast
) -> tuple[Batch, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pairs, labels, margins, reference log-probabilities of the pairs): `preference_data`
    tokenised and scored once per process for all runs with the same `data_key`."""
    key = data_key(task, reference)
    if key not in _PREFERENCE_DATA:
        data, margins = preference_data(task, reference, tokenizer)
        pairs = make_batch(tokenizer, data.prompts * 2, data.responses_a + data.responses_b)
        log_probs = pair_reference_log_probs(reference, pairs, task.params.micro_batch_size, "cpu")
        shared = (pairs, data.signs, margins, log_probs)
        remember(_PREFERENCE_DATA, key, shared, PREFERENCE_DATA_KEPT)
    return _PREFERENCE_DATA[key]


def preference_problem(task: TinyTask) -> PreferenceProblem:
    tokenizer = task_tokenizer(task)
    policy = task_reference(task, tokenizer)
    pairs, signs, margins, reference_log_probs = shared_preference_data(task, policy, tokenizer)
    eval_prompts = evaluation_prompts(task)
    return PreferenceProblem(
        policy=policy,
        pairs=pairs,
        signs=signs,
        reward_differences=lambda: margins,
        evaluate=lambda model: evaluate_policy(task, model, tokenizer, eval_prompts),
        trim_padding=False,
        reference_log_probs=reference_log_probs,
    )


def online_problem(task: TinyTask) -> OnlineProblem:
    tokenizer = task_tokenizer(task)
    policy = task_reference(task, tokenizer)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    eval_prompts = evaluation_prompts(task)
    temperature = task.params.temperature

    def sample(prompts: list[str], seed: int) -> Samples:
        return sample_responses(
            policy, tokenizer, prompts, task.max_response_tokens, seed, temperature
        )

    def evaluate() -> list[float]:
        responses = generate_responses(
            policy, tokenizer, eval_prompts, task.max_response_tokens, EVALUATION_SEED
        )
        return checked_rewards(task, eval_prompts, responses).mean(axis=0).tolist()

    def remembered() -> list[float]:
        return remembered_evaluation(task, policy, eval_prompts, evaluate)

    return OnlineProblem(
        policy=policy,
        prompts=task.sample_prompts,
        sample=sample,
        reference_log_probs=lambda batch: token_log_probs(reference, batch),
        rewards=lambda prompts, responses: checked_rewards(task, prompts, responses),
        evaluate=remembered,
    )
